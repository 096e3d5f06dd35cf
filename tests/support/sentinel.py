"""A Redis Sentinel group of real redis-server processes on loopback: a master, a replica and
three sentinels (quorum 2), for tests of every client through a failover."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from tests.support.processes import Redis, free_port, redis_server_binary, wait_until

MASTER_NAME = "mymaster"
# How long the sentinels wait before they call a silent master down (the failover then
# takes about a second more: an election and a promotion).
DOWN_AFTER_MS = 1000


class SentinelGroup:
    def __init__(self, workdir: Path, sentinels: int = 3) -> None:
        self.master = Redis(workdir / "master")
        self.replica = Redis(workdir / "replica", "--replicaof", "127.0.0.1", str(self.master.port))
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinels = [
            self._start_sentinel(workdir / f"sentinel-{i}", port)
            for i, port in enumerate(self.sentinel_ports)
        ]
        wait_until(self._replica_synced, timeout=15, what="the replica to sync")
        wait_until(self._sentinels_ready, timeout=15, what="the sentinels to see the group")

    def _start_sentinel(self, workdir: Path, port: int) -> subprocess.Popen[bytes]:
        workdir.mkdir(parents=True)
        config = workdir / "sentinel.conf"  # sentinels rewrite their config: one each
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
        )
        return subprocess.Popen(
            [redis_server_binary(), str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"sentinel://{hosts}/{MASTER_NAME}/{db}"

    def master_port(self) -> int:
        """The port of the master the sentinels name now."""
        with redis.Redis(port=self.sentinel_ports[0], socket_timeout=2) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
            return int(port)

    def _replica_synced(self) -> bool:
        with redis.Redis(port=self.replica.port) as replica:
            return bool(replica.info("replication").get("master_link_status") == "up")

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            with redis.Redis(port=port, socket_timeout=2) as sentinel:
                state = sentinel.sentinel_master(MASTER_NAME)
                if int(state["num-other-sentinels"]) < len(self.sentinel_ports) - 1:
                    return False
                if int(state["num-slaves"]) < 1:
                    return False
        return True

    def stop(self) -> None:
        for proc in self.sentinels:
            proc.terminate()
        for proc in self.sentinels:
            proc.wait(timeout=10)
        for server in (self.replica, self.master):
            if server.proc.poll() is None:
                server.stop()
