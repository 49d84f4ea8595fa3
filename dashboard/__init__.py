"""The Streamlit dashboard: workers, jobs and their history from the metrics store."""
