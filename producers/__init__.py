"""Frame publishers: turn a video into a job on Kafka, and follow it to the end."""
