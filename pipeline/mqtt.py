"""The MQTT transport: topic names, and a publisher that never blocks the frame loop (connect, LWT, bounded
offline queue, retained state). What the messages say is built in ``pipeline.payloads``.

Topics (``P`` = mqtt.prefix, ``C`` = a camera's name; the README has one real payload of each), all named
by ``DaemonTopics`` / ``Topics``:

* ``P/C/detections``  every processed frame (optionally rate-limited): confirmed objects
* ``P/C/events``      ``new`` / ``update`` / ``end`` per confirmed track, with before/after
* ``P/C/<label>/count``, ``/occupancy`` (ON/OFF), ``/snapshot`` (JPEG)   retained
* ``P/C/zones/<zone>/<label>/count``, ``/occupancy`` retained; ``P/C/zones/<zone>/events`` enter/leave
* ``P/C/lines/<line>/<label>/in``, ``/out`` retained totals; ``P/C/lines/<line>/events`` crossings
* ``P/C/status``, ``P/C/availability`` retained camera state; ``P/availability`` retained daemon
  online/offline (last will)
* ``P/C/stats``, ``P/stats``  per-camera and daemon-wide throughput every ``stats_interval_s``
* ``P/command``, ``P/C/command``  subscribed: ``{"action": "reload_model"}``, ``{"action": "reset_counts"}``
* ``<discovery_prefix>/<platform>/<node>/<id>/config`` Home Assistant discovery; ``<discovery_prefix>/status``
  subscribed (Home Assistant's birth message)

Two kinds of outgoing message, two delivery rules:

* *streams* (detections, events, stats) go through one bounded FIFO; when it is full the oldest
  message is dropped and counted. While the broker is away QoS>=1 messages wait there and are sent
  after reconnect; QoS 0 ones are not queued (at most once means exactly that).
* *state* (availability, status, counts, discovery) is "latest value wins" per topic, published
  retained with QoS 1, and re-sent after every reconnect so a restarted broker relearns it.

A publisher thread moves messages into paho only while connected and only while fewer than
``max_inflight`` are unacknowledged, so memory is bounded by ``queue_size + max_inflight`` no
matter how long the broker is down, and ``publish()`` costs the caller a deque append.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from squeezedet.errors import ConfigError

log = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"


def topic_level(name: str) -> str:
    """A label as one topic level: MQTT wildcards, separators and spaces become '_'."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", name) or "_"


class DaemonTopics:
    """The daemon-wide topic names under one prefix, and Home Assistant's."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.availability = f"{prefix}/availability"
        self.stats = f"{prefix}/stats"
        self.command = f"{prefix}/command"

    def for_camera(self, camera: str) -> Topics:
        """A camera's own topics under this prefix."""
        return Topics(self.prefix, camera)

    def commands(self, cameras: Iterable[str]) -> dict[str, str | None]:
        """Command topic -> the camera it addresses (None: every camera), for subscribing and dispatch."""
        return {self.command: None, **{self.for_camera(name).camera_command: name for name in cameras}}

    @staticmethod
    def ha_status(ha_cfg) -> str:
        """Home Assistant's birth/will topic, which the daemon subscribes to."""
        return ha_cfg.status_topic or f"{ha_cfg.discovery_prefix}/status"

    @staticmethod
    def ha_discovery(ha_cfg, platform: str, node: str, object_id: str) -> str:
        """An entity's discovery config topic."""
        return f"{ha_cfg.discovery_prefix}/{platform}/{node}/{object_id}/config"

    @staticmethod
    def ha_discovery_root(ha_cfg) -> str:
        """What every discovery config topic starts with (they are re-sent first)."""
        return f"{ha_cfg.discovery_prefix}/"


class Topics(DaemonTopics):
    """Topic names of one camera (and the daemon-wide ones it shares)."""

    def __init__(self, prefix: str, camera: str):
        super().__init__(prefix)
        self.camera = camera
        self.base = base = f"{prefix}/{camera}"
        self.camera_availability = f"{base}/availability"
        self.camera_stats = f"{base}/stats"
        self.detections = f"{base}/detections"
        self.events = f"{base}/events"
        self.status = f"{base}/status"
        self.camera_command = f"{base}/command"

    def count(self, label: str) -> str:
        return f"{self.base}/{topic_level(label)}/count"

    def occupancy(self, label: str) -> str:
        return f"{self.base}/{topic_level(label)}/occupancy"

    def snapshot(self, label: str) -> str:
        return f"{self.base}/{topic_level(label)}/snapshot"

    def zone_count(self, zone: str, label: str) -> str:
        return f"{self.base}/zones/{zone}/{topic_level(label)}/count"

    def zone_occupancy(self, zone: str, label: str) -> str:
        return f"{self.base}/zones/{zone}/{topic_level(label)}/occupancy"

    def zone_events(self, zone: str) -> str:
        return f"{self.base}/zones/{zone}/events"

    def line_total(self, line: str, label: str, direction: str) -> str:
        return f"{self.base}/lines/{line}/{topic_level(label)}/{direction}"

    def line_events(self, line: str) -> str:
        return f"{self.base}/lines/{line}/events"


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _encode(payload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":")).encode()


def tls_context(tls) -> ssl.SSLContext:
    """Client TLS context: the broker's certificate checked against ``ca_certs`` (the system's CAs when
    unset), ``certfile``/``keyfile`` for brokers that want client certificates."""
    for key in ("ca_certs", "certfile", "keyfile"):
        path = getattr(tls, key)
        if path and not os.path.isfile(path):
            raise ConfigError(f"mqtt.tls.{key}: {path}: file not found")
    # PROTOCOL_TLS_CLIENT: certificate and host name required. Not create_default_context(): from
    # Python 3.13 it adds VERIFY_X509_STRICT, which rejects the usual home-made mosquitto CA.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if tls.ca_certs:
            context.load_verify_locations(cafile=tls.ca_certs)
        else:
            context.load_default_certs()
        if tls.certfile:
            context.load_cert_chain(tls.certfile, tls.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mqtt.tls: cannot load certificates ({exc})") from None
    if tls.insecure:
        context.check_hostname = False
    return context


def connect_error(host: str, port: int, context: ssl.SSLContext | None, timeout: float = 2.0) -> str:
    """Why a connection fails, in words (paho only says that it did): refused, unresolvable, or the TLS
    handshake's complaint such as an untrusted certificate. Empty when a connection works now."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if context is not None:
                with context.wrap_socket(sock, server_hostname=host):
                    pass
    except Exception as exc:  # noqa: BLE001 - a diagnosis: whatever went wrong is the answer
        return str(exc) or type(exc).__name__
    return ""


class MqttPublisher:
    """paho-mqtt client + bounded queue + publisher thread. All public methods are non-blocking
    except ``close()``, which flushes for at most ``flush_timeout_s``."""

    def __init__(self, cfg, client_id: str, will_topic: str, command_topics: Iterable[str] = (),
                 on_command: Callable[[dict, str], None] | None = None,
                 subscriptions: dict[str, Callable[[bytes], None]] | None = None):
        import paho.mqtt.client as paho

        self._paho = paho
        self.cfg = cfg
        self.dropped = 0  #: stream messages discarded because the queue was full
        self.high_water = 0  #: largest queue length seen
        self.connected = False
        #: Stream messages and dirty state topics carry a sequence number: a state change never overtakes
        #: stream messages queued before it (a track's END event reaches subscribers before "offline").
        self._seq = itertools.count()
        self._queue: deque[tuple[int, _Message]] = deque()
        self._state: dict[str, _Message] = {}
        self._dirty: dict[str, int] = {}  # state topics to (re)send -> sequence number (-1: before all)
        self._inflight: dict[int, _Message] = {}
        self._early_acks: set[int] = set()  # acks that beat the bookkeeping after publish()
        self._cond = threading.Condition()
        self._stop = False
        self._closing = False
        self._fail_logged = False
        self._command_topics = tuple(command_topics)
        self._on_command = on_command
        #: other subscribed topics (e.g. Home Assistant's status) -> handler(payload)
        self._subscriptions = dict(subscriptions or {})
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)

        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        client.will_set(will_topic, OFFLINE, qos=1, retain=True)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        self._ssl_context = tls_context(cfg.tls) if cfg.tls is not None else None
        if self._ssl_context is not None:
            client.tls_set_context(self._ssl_context)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        client.max_inflight_messages_set(cfg.max_inflight)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client

    # -- API for the daemon --------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (the broker may be down: paho keeps retrying with back-off)."""
        self._client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive)
        self._client.loop_start()
        self._thread.start()

    def publish(self, topic: str, payload, qos: int | None = None, retain: bool = False) -> None:
        """Queue a stream message; drops the oldest queued message when the queue is full."""
        msg = _Message(topic, _encode(payload), self.cfg.qos if qos is None else qos, retain)
        with self._cond:
            if msg.qos == 0 and not self.connected:
                return
            if len(self._queue) >= self.cfg.queue_size:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append((next(self._seq), msg))
            self.high_water = max(self.high_water, len(self._queue))
            self._cond.notify_all()

    def set_state(self, topic: str, payload) -> None:
        """Retained state topic: only the newest value is kept and sent (QoS 1)."""
        msg = _Message(topic, _encode(payload), 1, True)
        with self._cond:
            if self._state.get(topic) == msg:
                return
            self._state[topic] = msg
            self._dirty.pop(topic, None)  # a newer value takes the newer place in the order
            self._dirty[topic] = next(self._seq)
            self._cond.notify_all()

    def resend_state(self, first: str = "") -> None:
        """Send every retained state topic again (topics starting with ``first`` go first: Home
        Assistant wants the discovery configs before the states they describe)."""
        with self._cond:
            topics = sorted(self._state, key=lambda t: not (first and t.startswith(first)))
            self._dirty.clear()
            for topic in topics:
                self._dirty[topic] = -1
            self._cond.notify_all()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Flush (bounded by flush_timeout_s), then disconnect cleanly. Call set_state(offline) first."""
        deadline = time.monotonic() + self.cfg.flush_timeout_s
        with self._cond:
            self._closing = True
            while (self._queue or self._dirty or self._inflight) and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            unsent = len(self._queue) + len(self._dirty) + len(self._inflight)
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(2.0)
        if unsent:
            log.warning("mqtt messages not delivered at shutdown", extra={"fields": {"unsent": unsent}})
        self._client.disconnect()
        self._client.loop_stop()

    # -- publisher thread ----------------------------------------------------------------------
    def _ready(self) -> bool:
        return (self.connected and len(self._inflight) < self.cfg.max_inflight
                and bool(self._dirty or self._queue))

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._ready():
                    self._cond.wait(0.5)
                if self._stop:
                    return
                topic = min(self._dirty, key=self._dirty.__getitem__) if self._dirty else None
                if topic is not None and (not self._queue or self._dirty[topic] < self._queue[0][0]):
                    del self._dirty[topic]
                    msg = self._state[topic]
                else:
                    msg = self._queue.popleft()[1]
            self._send(msg)

    def _send(self, msg: _Message) -> None:
        paho = self._paho
        try:
            info = self._client.publish(msg.topic, msg.payload, msg.qos, msg.retain)
        except ValueError as exc:  # invalid topic or payload: a bug, not a network condition
            log.error("mqtt publish rejected", extra={"fields": {"topic": msg.topic, "reason": str(exc)}})
            return
        # QoS>=1 messages that raced a disconnect stay in paho and are re-sent after reconnect.
        kept = info.rc == paho.MQTT_ERR_SUCCESS or (msg.qos > 0 and info.rc == paho.MQTT_ERR_NO_CONN)
        with self._cond:
            if not kept:
                return
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
            else:
                self._inflight[info.mid] = msg

    # -- paho callbacks (network thread) -------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt connection refused", extra={"fields": {"reason": str(reason_code)}})
            return
        with self._cond:
            self.connected = True
            self._fail_logged = False
            for topic in self._state:  # a reconnected broker relearns the state before the backlog
                self._dirty[topic] = -1
            self._cond.notify_all()
        for topic in (*self._command_topics, *self._subscriptions):
            client.subscribe(topic, qos=1)
        log.info("mqtt connected", extra={"fields": {"host": self.cfg.host, "port": self.cfg.port}})

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._fail_logged and not self._closing:
            self._fail_logged = True
            # The probe may take seconds (DNS, handshake): not on paho's network thread.
            threading.Thread(target=self._log_unreachable, name="mqtt-diagnose", daemon=True).start()

    def _log_unreachable(self) -> None:
        fields = {"host": self.cfg.host, "port": self.cfg.port,
                  "reason": connect_error(self.cfg.host, self.cfg.port, self._ssl_context)}
        log.warning("mqtt broker unreachable, retrying in the background", extra={"fields": fields})

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self.connected = False
            # QoS 0 packets not yet written are discarded by paho on reconnect: free their slots.
            for mid in [m for m, msg in self._inflight.items() if msg.qos == 0]:
                del self._inflight[mid]
            self._cond.notify_all()
        if not self._closing:
            self._fail_logged = False  # the first failed reconnect of this outage says why
            log.warning("mqtt disconnected, reconnecting in the background",
                        extra={"fields": {"reason": str(reason_code), "queued": len(self._queue)}})

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            if self._inflight.pop(mid, None) is None:
                self._early_acks.add(mid)
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg) -> None:
        handler = self._subscriptions.get(msg.topic)
        if handler is not None:
            handler(bytes(msg.payload))
            return
        if msg.retain:  # a stale retained command must not fire on every restart
            log.info("ignoring retained command", extra={"fields": {"topic": msg.topic}})
            return
        try:
            command = json.loads(msg.payload)
        except (ValueError, UnicodeDecodeError):
            command = None
        if not isinstance(command, dict) or not isinstance(command.get("action"), str):
            log.warning("ignoring malformed command (expected a JSON object with an \"action\")",
                        extra={"fields": {"topic": msg.topic}})
            return
        if self._on_command is not None:
            self._on_command(command, msg.topic)
