"""dvp: a distributed video face-filter pipeline on Apache Kafka."""
__version__ = "0.1.0"
