"""The package's shape: one top-level name installed, dependencies pointing one way."""
import ast
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = {"producers": "dvp.producers", "consumers": "dvp.consumers", "streams": "dvp.streams",
          "dashboard": "dvp.dashboard", "infra": "dvp.infra"}
# The only modules that reach across every stage: the CLI and the one-shot runner.
CROSSING = {"cli.py", "run.py", "__main__.py"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_shared_foundation_imports_no_stage():
    foundation = [p for p in (ROOT / "dvp").rglob("*.py") if p.name not in CROSSING]
    assert len(foundation) > 10
    stages = tuple(STAGES.values())
    reaching = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.startswith(stages))
                for p in foundation}
    assert {p: m for p, m in reaching.items() if m} == {}


def test_stages_import_the_foundation_never_each_other():
    sideways = {}
    for folder in STAGES:
        others = tuple(package for other, package in STAGES.items() if other != folder)
        for path in (ROOT / folder).rglob("*.py"):
            found = sorted(m for m in imported_modules(path) if m.startswith(others))
            if found:
                sideways[str(path.relative_to(ROOT))] = found
    assert sideways == {}


def test_the_wheel_installs_one_top_level_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    [wheel] = tmp_path.glob("dvp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"dvp"}
    for module in ("dvp/streams/app.py", "dvp/consumers/worker.py", "dvp/producers/publish.py",
                   "dvp/infra/kafka/pom.xml", "dvp/schemas/Frame.avsc"):
        assert module in names


def test_the_stages_import_as_dvp_subpackages_only(tmp_path):
    def imports(module: str) -> bool:
        return subprocess.run([sys.executable, "-c", f"import {module}"], cwd=tmp_path,
                              capture_output=True).returncode == 0

    assert all(imports(f"dvp.{stage}") for stage in ("streams", "producers", "consumers", "infra", "schemas"))
    assert not any(imports(stage) for stage in ("streams", "producers", "consumers", "infra", "schemas"))


def test_only_the_kafka_module_knows_confluent_kafkas_exceptions():
    """Stages catch BrokerError, which says what an error allows (kafka.asked)."""
    knowing = {str(p.relative_to(ROOT)) for folder in ("dvp", *STAGES) for p in (ROOT / folder).rglob("*.py")
               if {"confluent_kafka.KafkaException", "confluent_kafka.KafkaError"} & imported_modules(p)}
    assert knowing == {"dvp/kafka.py", "dvp/kafka_cluster.py"}


def test_only_the_cluster_handle_makes_dvps_admin_client():
    """One admin client a process (dvp.kafka_cluster.Cluster), made at its start and
    passed in; a helper that made its own for each question made seven for one job.
    (`dvp kafka up`'s launcher asks its own brokers whether they are up, apart.)"""
    def makes_admin(path: Path) -> bool:
        tree = ast.parse(path.read_text())
        called = any(isinstance(node, ast.Attribute) and node.attr == "admin" and isinstance(node.value, ast.Name)
                     and node.value.id == "kafka" for node in ast.walk(tree))
        return called or "dvp.kafka.admin" in imported_modules(path)
    making = {str(p.relative_to(ROOT)) for folder in ("dvp", *STAGES) for p in (ROOT / folder).rglob("*.py")
              if makes_admin(p)}
    assert making == {"dvp/kafka_cluster.py"}
