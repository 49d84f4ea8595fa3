"""Apache Kafka on this machine, without Docker: the broker's jars fetched from
Maven Central by Maven (`pom.xml` beside this file), run by the JDK in KRaft
mode, one broker or a cluster on loopback ports. Every node is broker and
controller at once; readiness is asked of the cluster, not slept for."""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from dvp import kafka
from dvp.errors import BrokerError, DvpError
from dvp.infra import tansu
from dvp.infra.processes import ServiceDir, stop_processes
from dvp.kafka import RDKAFKA_LOGS
from dvp.waiting import wait_until

HERE = Path(__file__).parent
JAVA_OPTS = ["-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]


def cache_dir() -> Path:
    return Path(os.environ.get("DVP_KAFKA_CACHE", Path.home() / ".cache" / "dvp" / "kafka"))


def fetch() -> Path:
    """The broker's jars, fetched by Maven on first use."""
    libs = cache_dir() / "libs"
    if any(libs.glob("kafka_2.13-*.jar")):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DvpError("Apache Kafka is fetched with Maven: install it (and a JDK 17+) first")
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    done = subprocess.run([mvn, "-q", "-B", "-f", str(HERE / "pom.xml"), "dependency:copy-dependencies",
                           f"-DoutputDirectory={tmp}"], capture_output=True, text=True)
    if done.returncode != 0:
        raise DvpError(f"Maven could not fetch Apache Kafka: {(done.stdout + done.stderr).strip()[-300:]}")
    tmp.replace(libs)
    return libs


def new_cluster_id() -> str:
    """A random cluster id as Kafka makes them: URL-safe base64 of a UUID, never starting
    with '-' (which the storage tool's argument parser took for an option, 1 time in 64)."""
    while (cluster_id := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))[0] == "-":
        pass
    return cluster_id


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int
    controller_port: int


class KafkaCluster:
    """N KRaft nodes under `home`; start, stop and kill them one by one."""

    def __init__(self, home: Path, brokers: int = 1, base_port: int | None = None, with_parent: bool = False):
        """`with_parent`: the nodes end when this process does (tests)."""
        self.home = home
        self.with_parent = with_parent
        self.services = ServiceDir(home)
        ports = ([base_port + i for i in range(2 * brokers)] if base_port
                 else [tansu.free_port() for _ in range(2 * brokers)])
        self.nodes = [Node(i + 1, ports[2 * i], ports[2 * i + 1]) for i in range(brokers)]
        self.procs: dict[int, subprocess.Popen] = {}

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def _properties(self, node: Node) -> Path:
        n = len(self.nodes)
        voters = ",".join(f"{m.node_id}@127.0.0.1:{m.controller_port}" for m in self.nodes)
        conf = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.home / f"node-{node.node_id}" / "data",
            "num.partitions": 1,
            "default.replication.factor": min(n, 3),
            "min.insync.replicas": 2 if n >= 3 else 1,
            "offsets.topic.replication.factor": min(n, 3),
            "transaction.state.log.replication.factor": min(n, 3),
            "transaction.state.log.min.isr": 2 if n >= 3 else 1,
            "group.initial.rebalance.delay.ms": 0,
            # Abort a dead producer's timed-out transaction within a second of its timeout.
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000,
            "auto.create.topics.enable": "false",
        }
        path = self.home / f"node-{node.node_id}" / "server.properties"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in conf.items()))
        return path

    def _java(self, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise DvpError("Apache Kafka needs a JDK 17+: `java` is not on the PATH")
        return [java, *JAVA_OPTS, f"-Dlog4j2.configurationFile={HERE / 'log4j2.yaml'}",
                "-cp", str(fetch() / "*"), *args]

    def format(self) -> None:
        cluster_id = new_cluster_id()
        for node in self.nodes:
            argv = self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                              "-c", str(self._properties(node)), "--ignore-formatted")
            for _attempt in range(2):  # once seen failing for no reason it said, then fine again
                done = subprocess.run(argv, capture_output=True, text=True)
                if done.returncode == 0:
                    break
                time.sleep(1)
            else:
                raise DvpError(f"cannot format Kafka node {node.node_id} (exit {done.returncode}): "
                               f"{(done.stdout + done.stderr).strip()[-600:]}")

    def start(self, timeout: float = 90.0) -> KafkaCluster:
        if not all((self.home / f"node-{n.node_id}" / "data" / "meta.properties").exists() for n in self.nodes):
            self.format()
        for node in self.nodes:
            self.start_node(node.node_id, wait=False)
        self.wait_ready(timeout)
        return self

    def start_node(self, node_id: int, wait: bool = True, timeout: float = 90.0) -> None:
        props = self.home / f"node-{node_id}" / "server.properties"
        self.procs[node_id] = self.services.spawn(f"kafka-{node_id}", self._java("kafka.Kafka", str(props)), {},
                                                  with_parent=self.with_parent)
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until every node is up and the cluster has a controller."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap, **RDKAFKA_LOGS})

        def ready() -> bool:
            for node_id, proc in self.procs.items():
                if proc.poll() is not None:
                    raise DvpError(f"Kafka node {node_id} exited; see {self.services.logs / f'kafka-{node_id}.log'}")
            try:
                with kafka.asked("list topics"):
                    md = admin.list_topics(timeout=2)
            except BrokerError:  # not listening yet
                return False
            return len(md.brokers) == len(self.procs) and md.controller_id > 0

        wait_until(ready, timeout, f"Kafka did not become ready within {timeout:g} s; logs in {self.services.logs}",
                   interval=0.5)

    def stop(self) -> None:
        stop_processes([proc.pid for proc in self.procs.values()], grace=30)
        self.procs.clear()



def up(home: Path, brokers: int, base_port: int = 19092) -> KafkaCluster:
    """`dvp kafka up`: a cluster in the background under `home`, on fixed ports."""
    services = ServiceDir(home)
    if any(s.alive for s in services.services()):
        raise DvpError(f"a Kafka cluster already runs from {home}; `dvp kafka down` first")
    shutil.rmtree(home, ignore_errors=True)
    for port in range(base_port, base_port + 2 * brokers):
        if tansu.port_open(port):
            raise DvpError(f"port {port} is taken; Kafka's nodes use ports {base_port}-{base_port + 2 * brokers - 1}")
    return KafkaCluster(home, brokers, base_port).start()


def down(home: Path) -> list:
    """`dvp kafka down`: stop every node and delete the cluster's data."""
    stopped = ServiceDir(home).stop()
    shutil.rmtree(home, ignore_errors=True)
    return stopped
