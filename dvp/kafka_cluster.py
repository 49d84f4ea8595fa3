"""A process's one handle on the Kafka cluster: the settings it was reached with and
one admin client, through which the pipeline's topics are made (once) and every
question about them is asked: partitions, limits, retention, health."""
from __future__ import annotations

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from dvp import kafka
from dvp.config import Settings
from dvp.errors import BrokerError
from dvp.waiting import wait_until


class Cluster:
    """Make one at a process's start and pass it to what needs the cluster. Nothing is
    asked until a question comes: the first makes the admin client and waits until
    the cluster answers (`Cluster.reach`: at once), so that a bad input file or camera
    is said before an absent cluster. The admin client is librdkafka's, safe to share
    between threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: AdminClient | None = None
        self._reached = False
        self._replication: int | None = None
        self._made: set[str] = set()  # topics this process has made sure of

    @classmethod
    def reach(cls, settings: Settings, timeout: float | None = None) -> Cluster:
        return cls(settings).wait_reachable(timeout)

    def wait_reachable(self, timeout: float | None = None) -> Cluster:
        """Return once the cluster answers, or fail within the timeout. Asks in
        short rounds, so that a signal stops the wait promptly."""
        timeout = self.settings.connect_timeout_s if timeout is None else timeout
        if self._admin is None:
            self._admin = kafka.admin(self.settings)  # settings it refuses: said here, in one line
        admin = self._admin
        last_error: list[str] = ["no answer"]

        def answers() -> bool:
            try:
                admin.list_topics(timeout=min(timeout, 0.5))
                return True
            except KafkaException as exc:
                last_error[0] = exc.args[0].str() if exc.args else str(exc)
                return False

        try:
            wait_until(answers, timeout, "", interval=0, error=BrokerError)
        except BrokerError:
            raise BrokerError(f"cannot reach Kafka at {self.settings.bootstrap} within {timeout:g} s "
                              f"({last_error[0]})") from None
        self._reached = True
        return self

    @property
    def _client(self) -> AdminClient:
        """The admin client, once the cluster has answered it (waits, or raises BrokerError)."""
        if not self._reached or self._admin is None:
            self.wait_reachable()
        assert self._admin is not None
        return self._admin

    def _topics(self, topic: str | None = None, timeout: float | None = None) -> dict:
        with kafka.asked("cannot list the cluster's topics"):
            return self._client.list_topics(topic, timeout=timeout or self.settings.connect_timeout_s).topics

    def replication_factor(self) -> int:
        """The replication of the topics dvp creates: the setting, or where it is -1
        (the default) the cluster's own `default.replication.factor`, so that a
        replicated cluster gets replicated topics without being told twice."""
        if self._replication is None:
            self._replication = self._asked_replication()
        return self._replication

    def _asked_replication(self) -> int:
        settings = self.settings
        if settings.replication_factor != -1:
            return settings.replication_factor
        with kafka.asked("cannot list the cluster's brokers"):
            brokers = self._client.list_topics(timeout=settings.connect_timeout_s).brokers
        if len(brokers) <= 1:
            return 1
        resource = ConfigResource(ConfigResource.Type.BROKER, str(min(brokers)))
        try:
            configs = self._client.describe_configs([resource])[resource].result(timeout=settings.connect_timeout_s)
            wanted = int(configs["default.replication.factor"].value)
        except (KafkaException, KeyError, ValueError, TypeError) as exc:
            raise BrokerError(f"cannot read the cluster's default.replication.factor ({exc}); "
                              f"set DVP_REPLICATION_FACTOR") from None
        return max(1, min(wanted, len(brokers)))

    def ensure_topics(self, compacted: dict[str, int] | None = None) -> None:
        """Create the pipeline's topics, and any `compacted` ones ({name: partitions}),
        explicitly (auto-created topics get the wrong size, or none at all); once a
        process: what it made sure of stays made."""
        wanted = {**self.settings.topic_layout, **(compacted or {})}
        if wanted.keys() <= self._made:
            return
        existing = self._topics()
        rf = self.replication_factor()
        # Given a replication factor, acknowledged writes survive the loss of one
        # replica; left to the cluster, so is min.insync.replicas.
        config = {"min.insync.replicas": str(rf - 1)} if self.settings.replication_factor >= 3 else {}
        config["max.message.bytes"] = str(kafka.RECORD_MAX_BYTES)
        missing = [NewTopic(name, parts, rf, config={
                       **config, **({"cleanup.policy": "compact"} if name in (compacted or {}) else {})})
                   for name, parts in wanted.items() if name not in existing]
        for name, future in (self._client.create_topics(missing).items() if missing else ()):
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise kafka.refused(exc, f"cannot create topic {name}") from None

        def all_led() -> bool:  # creation is asynchronous on real clusters: wait for every leader
            topics = self._topics()
            return all(name in topics and topics[name].partitions
                       and all(p.leader >= 0 for p in topics[name].partitions.values()) for name in wanted)

        wait_until(all_led, self.settings.connect_timeout_s,
                   f"topics {sorted(wanted)} did not appear on {self.settings.bootstrap}", error=BrokerError)
        self._made |= wanted.keys()

    def partitions_now(self, topic: str) -> int | None:
        """The topic's partitions as the cluster knows them now; None: no such topic (yet)."""
        t = self._topics(topic).get(topic)
        return len(t.partitions) if t is not None and t.error is None and t.partitions else None

    def partition_count(self, topic: str) -> int:
        """The topic's partitions, asked until known: a topic just created through one
        broker reaches the others' metadata a moment later."""
        return wait_until(lambda: self.partitions_now(topic), min(self.settings.connect_timeout_s, 10),
                          f"topic {topic} does not exist on {self.settings.bootstrap}; run `dvp topics`",
                          error=BrokerError)

    def ends(self, consumer: Consumer, *topics: str) -> list[TopicPartition]:
        """Every partition of `topics` at its end as it is now: where a reader of
        what comes next starts."""
        timeout = self.settings.connect_timeout_s
        return [TopicPartition(topic, p, kafka.watermarks(consumer, topic, p, timeout)[1])
                for topic in topics for p in range(self.partition_count(topic))]

    def max_record_bytes(self, limit: int, *topics: str) -> int:
        """The largest record that may go to all of `topics`: `limit` (the producer's),
        or less where a topic says so (a cluster whose topics were made before dvp made them)."""
        resources = [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in topics]
        for future in self._client.describe_configs(resources).values():
            try:
                entry = future.result(timeout=self.settings.connect_timeout_s).get("max.message.bytes")
            except (KafkaException, TimeoutError):
                continue  # a broker that does not say: the producer's limit stands, and the broker has the last word
            if entry is not None and str(entry.value).isdigit():
                limit = min(limit, int(entry.value))
        return limit

    def record_lifetime_s(self, topic: str) -> float | None:
        """How long a record may stay in `topic`: its retention, plus the segment time
        (the segment being written is not deleted); None: for ever, or not said."""
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        try:
            configs = self._client.describe_configs([resource])[resource].result(
                timeout=self.settings.connect_timeout_s)
            retention_ms, segment_ms = (int(configs[name].value) for name in ("retention.ms", "segment.ms"))
        except (KafkaException, KeyError, ValueError, TypeError, TimeoutError):
            return None
        return None if retention_ms < 0 or segment_ms < 0 else (retention_ms + segment_ms) / 1000

    def group_on(self, group: str, topic: str) -> tuple[dict[int, int], dict[int, str]]:
        """A consumer group on a topic as the cluster describes it now: the offset it
        committed on each partition (-1: none yet), and the member (client id) each
        is assigned to, where the broker says."""
        timeout = min(self.settings.connect_timeout_s, 5)
        parts = self._topics(topic, timeout).get(topic)
        if parts is None or parts.error is not None or not parts.partitions:
            raise BrokerError(f"topic {topic} does not exist on {self.settings.bootstrap}; run `dvp topics`")
        try:
            with kafka.asked(f"cannot read the consumer group {group} from the cluster"):
                asked = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in parts.partitions])
                offsets = self._client.list_consumer_group_offsets([asked])[group].result(timeout=timeout)
                described = self._client.describe_consumer_groups([group])[group].result(timeout=timeout)
        except (TimeoutError, KeyError) as exc:
            raise BrokerError(f"cannot read the consumer group {group} from the cluster: {exc}") from None
        committed = {p: -1 for p in parts.partitions} | {
            tp.partition: tp.offset if tp.offset >= 0 and tp.error is None else -1 for tp in offsets.topic_partitions}
        owner = {tp.partition: m.client_id for m in described.members
                 for tp in (m.assignment.topic_partitions if m.assignment else []) if tp.topic == topic}
        return committed, owner

    def diagnose(self) -> list[str]:
        """What is wrong with the pipeline as the cluster sees it now, one phrase each:
        partitions without a leader, consumer groups without members."""
        settings = self.settings
        try:
            topics = self.wait_reachable(min(settings.connect_timeout_s, 5))._topics(timeout=5)
        except BrokerError as exc:
            return [str(exc)]
        problems = [f"partition {p} of {name} has no leader"
                    for name in settings.topic_layout if name in topics
                    for p, meta in sorted(topics[name].partitions.items()) if meta.leader < 0]
        groups = {settings.names.workers: "worker", settings.names.aggregator: "aggregator"}
        for group, described in self._client.describe_consumer_groups(list(groups)).items():
            try:
                empty = described.result(timeout=5).state in (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD)
            except KafkaException as exc:
                empty = exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND  # else the broker cannot tell us
            except TimeoutError:  # the group's coordinator is away: a leader problem, named above
                empty = False
            if empty:
                problems.append(f"no {groups[group]} is running (consumer group {group} has no members)")
        return problems
