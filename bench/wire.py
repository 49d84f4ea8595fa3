"""Bytes on the wire per frame against its JPEG payload, on both legs a frame
takes through Kafka: the producer's frames (publish) and a worker's results
(FrameProcessor, as `dvp worker` runs it), each sent and then fetched back, on a
private embedded broker. Bytes are librdkafka's own counts of what its clients
sent and received (requests, framing, record batches, Avro envelopes, keys).

    python bench/wire.py [--frames 200] [--size 768x576]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from confluent_kafka import TopicPartition

from dvp import kafka
from dvp.config import Settings
from dvp.consumers.frames import Consumed, FrameProcessor, WorkerIdentity, send_outcome
from dvp.faces import Detectors
from dvp.infra import tansu
from dvp.kafka_cluster import Cluster
from dvp.messages import ASSEMBLY, FRAMES, ProcessedFrame
from dvp.producers.publish import publish
from dvp.sample import write_sample

STATS_MS = 100


class Counted:
    """librdkafka's running totals of one client: bytes sent and received."""

    def __init__(self):
        self.tx = self.rx = 0

    def conf(self) -> dict:
        return {"statistics.interval.ms": STATS_MS, "stats_cb": self._stats}

    def _stats(self, text: str) -> None:
        stats = json.loads(text)
        self.tx, self.rx = stats["tx_bytes"], stats["rx_bytes"]

    def settle(self, client) -> None:
        """Let the last statistics arrive."""
        deadline = time.monotonic() + 3 * STATS_MS / 1000
        while time.monotonic() < deadline:
            client.poll(0.05)


def fetch_all(cluster: Cluster, topic: str) -> tuple[list[bytes], Counted]:
    """Every record of a topic as it is now, and what fetching them cost."""
    settings = cluster.settings
    counted = Counted()
    reader = kafka.consumer(settings, **{"group.id": "bench-wire", "enable.partition.eof": True}, **counted.conf())
    try:
        parts = cluster.partition_count(topic)
        ends = {p: kafka.watermarks(reader, topic, p, 10)[1] for p in range(parts)}
        reader.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        waiting, values = {p for p, end in ends.items() if end > 0}, []
        while waiting:
            msg = reader.poll(10)
            if msg is None:
                raise SystemExit(f"reading {topic} stalled")
            if msg.error():
                waiting.discard(msg.partition())
                continue
            values.append(msg.value())
            if msg.offset() + 1 >= ends[msg.partition()]:
                waiting.discard(msg.partition())
        counted.settle(reader)
        return values, counted
    finally:
        reader.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", default="768x576")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as work:
        clip = Path(work) / "clip.mp4"
        write_sample(str(clip), seconds=args.frames / 25, width=width, height=height, fps=25, audio=False)
        port = tansu.free_port()
        broker = tansu.start(port, Path(work) / "broker.log", with_parent=True)
        try:
            settings = Settings.load(environ={"DVP_HOME": work}).replace(bootstrap_servers=f"127.0.0.1:{port}")
            cluster = Cluster.reach(settings)
            cluster.ensure_topics()
            rows = [measure_frames(cluster, clip), measure_results(cluster)]
        finally:
            broker.kill()
            broker.wait()
    print(f"| leg ({width}x{height}, {args.frames} frames) | JPEG per frame | sent per frame | fetched per frame "
          f"| sent / JPEG | fetched / JPEG |")
    print("|---|---|---|---|---|---|")
    for leg, frames, jpeg, sent, fetched in rows:
        kb = [f"{n / frames / 1e3:.1f} kB" for n in (jpeg, sent, fetched)]
        print(f"| {leg} | " + " | ".join(kb) + f" | {sent / jpeg:.3f} | {fetched / jpeg:.3f} |")


def measure_frames(cluster: Cluster, clip: Path) -> tuple:
    settings = cluster.settings
    counted = Counted()
    producer = kafka.ReliableProducer(settings, **counted.conf())
    published = publish(cluster, str(clip), "blur", progress=False, producer=producer)
    counted.settle(producer)
    values, fetched = fetch_all(cluster, settings.names.frames)
    jpeg = sum(len(FRAMES.decode(v).jpeg) for v in values)
    assert len(values) == published.frames
    return "producer → broker → worker (frames)", len(values), jpeg, counted.tx, fetched.rx


def measure_results(cluster: Cluster) -> tuple:
    settings = cluster.settings
    frames, _ = fetch_all(cluster, settings.names.frames)
    counted = Counted()
    producer = kafka.ReliableProducer(settings, **counted.conf())
    detectors = Detectors.of(settings)
    processor = FrameProcessor(settings.names, detectors, WorkerIdentity("bench", "bench", "127.0.0.1", 0),
                               settings.jpeg_quality, settings.max_pixels)
    try:
        for offset, value in enumerate(frames):
            send_outcome(producer, processor.process(Consumed(settings.names.frames, 0, offset, None, value)), None)
        producer.flush(30)
    finally:
        detectors.close()
    counted.settle(producer)
    values, fetched = fetch_all(cluster, settings.names.processed)
    results = [r for r in map(ASSEMBLY.decode, values) if isinstance(r, ProcessedFrame)]
    jpeg = sum(len(r.jpeg) for r in results)
    # The producer also sent each frame's metrics record: counted, as on the wire.
    return "worker → broker → aggregator (results)", len(results), jpeg, counted.tx, fetched.rx


if __name__ == "__main__":
    main()
