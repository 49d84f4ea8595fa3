"""Apache Kafka on this machine: `cluster.py` runs it; `pom.xml` names its jars."""
