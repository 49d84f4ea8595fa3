"""Render one dashboard page with Streamlit's AppTest, in a process of its own
(chDB opens one store per process), and print what is on it as JSON.

    python -m tests.pages PAGE [JOB_ID]      (settings from the environment)
"""
import json
import sys

from streamlit.testing.v1 import AppTest

from dvp.dashboard.serve import APP


def main() -> None:
    page, job = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    sys.argv = [str(APP), "--no-sink"]
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["page"] = page
    at.query_params["refresh"] = "0"  # a running job's page would redraw itself for ever
    if job is not None:
        at.query_params["job"] = job
    at.run()
    print(json.dumps({
        "exception": [e.value for e in at.exception],
        "error": [e.value for e in at.error], "warning": [e.value for e in at.warning],
        "info": [e.value for e in at.info], "header": [h.value for h in at.header],
        "text": [t.value for t in at.text], "markdown": [m.value for m in at.markdown],
        "metrics": {m.label: m.value for m in at.metric},
        "tables": [t.value.astype(str).to_dict(orient="records") for t in at.dataframe],
    }))


if __name__ == "__main__":
    main()
