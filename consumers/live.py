"""Live frames (`dvp live`) beside the file jobs: a thread of each worker with its
own consumer, detector and producer, so that a long file job never holds a
camera's frames back. Live frames are for now: a consumer joining starts at the
end of the log, and a frame older than DVP_LIVE_DEADLINE_MS when its turn
comes is dropped, since it would be shown too late."""
from __future__ import annotations

import logging
import threading

import numpy as np

from dvp import kafka
from dvp.config import Settings
from dvp.consumers.frames import Consumed, FrameProcessor, WorkerIdentity, send_outcome
from dvp.consumers.live_schedule import LiveSchedule
from dvp.errors import DvpError, MalformedRecord
from dvp.faces import Detectors
from dvp.messages import FRAMES, PER_FRAME, now_us

log = logging.getLogger("dvp.worker")
COST_SMOOTHING = 0.2  # weight of the newest frame in the running cost of one
RELAX_AFTER = 4  # frames refused in a row before the cost estimate relaxes


class Budget:
    """Which live frames are worth beginning: those that can still be shown by their
    deadline, given what a frame's work costs here lately."""

    def __init__(self, deadline_us: int):
        self.deadline_us = deadline_us
        self.cost_us = 0.0
        self.not_begun = 0  # frames refused in a row

    def worth_beginning(self, age_us: int) -> bool:
        """`age_us`: since the frame's capture, on our clock. A frame dated in the
        future is refused too."""
        if not -self.deadline_us <= age_us <= self.deadline_us - self.cost_us:
            self.not_begun += 1
            # A frame not begun measures nothing: after a slow spell (a pause, a busy machine)
            # the estimate could stay past the deadline and the worker skip every frame for
            # good, so a long run of refusals relaxes it. Not a short one: a worker behind
            # skips one or two frames between those it does, and an estimate relaxed by each
            # of them begins frames that end past their deadline, work for nothing.
            if self.not_begun > RELAX_AFTER:
                self.cost_us *= 1 - COST_SMOOTHING
            return False
        self.not_begun = 0
        return True

    def spent(self, cost_us: int) -> None:
        self.cost_us = COST_SMOOTHING * cost_us + (1 - COST_SMOOTHING) * self.cost_us


class LiveLoop(threading.Thread):
    def __init__(self, settings: Settings, identity: WorkerIdentity, stop: threading.Event):
        super().__init__(name="live", daemon=True)
        self.settings, self.identity, self.stop = settings, identity, stop
        self.processed = self.dropped = 0

    def run(self) -> None:
        s = self.settings
        consumer = kafka.consumer(s, **{
            "group.id": s.names.live_workers, "auto.offset.reset": "latest", "enable.auto.commit": True,
            "session.timeout.ms": s.session_timeout_ms, "fetch.wait.max.ms": 5, "client.id": self.identity.id})
        producer = kafka.ReliableProducer(s, **kafka.LIVE_PRODUCER)
        detectors = Detectors.of(s, ready=(s.live_detector,))
        # The full searches beside the frames in line (live_schedule.py) have their own detector.
        beside = Detectors.of(s, ready=(s.live_detector,))
        schedule = LiveSchedule(s.live_full_every or None, beside=lambda name: beside.get(name).detect)
        # Models load and their first inference is slow: not on a live frame.
        for made in (detectors, beside):
            made.get(s.live_detector).detect(np.zeros((480, 640, 3), np.uint8))
        processor = FrameProcessor(s.names, detectors, self.identity, s.jpeg_quality, s.max_pixels,
                                   results_topic=s.names.live_out,
                                   schedule=schedule)
        budget = Budget(s.live_deadline_ms * 1000)
        consumer.subscribe([s.names.live], on_assign=lambda _c, parts: log.info(
            "live frames from partitions %s", sorted(tp.partition for tp in parts)))
        try:
            while not self.stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                record = Consumed.of(msg)
                try:
                    frame = FRAMES.decode(msg.value())
                except MalformedRecord:
                    frame = None  # the processor sets it aside with the reason
                # Too late to be shown once done, or dated in the future: the capture time is the
                # record's, the clock ours. A worker behind skips to the frames it can still deliver,
                # rather than finishing each just past the deadline. This also keeps a frame that
                # killed a worker from killing it again: the restart takes longer than any deadline.
                began = now_us()
                if frame is not None and not budget.worth_beginning(began - frame.capture_ts_us):
                    self.dropped += 1
                    continue
                if frame is not None and frame.privacy != PER_FRAME:  # no aggregator filters live frames
                    outcome = processor.set_aside(record, "live frames are filtered per frame")
                else:
                    outcome = processor.process(record)
                    budget.spent(now_us() - began)
                send_outcome(producer, outcome, None)
                self.processed += 1
        except DvpError as exc:  # the file jobs go on
            log.error("live frames stopped: %s", exc)
        finally:
            producer.flush(5)
            consumer.close()
            schedule.close()
            detectors.close()
            beside.close()
            log.info("live: %d frames processed, %d dropped past their deadline", self.processed, self.dropped)
