"""A hostile guest on the LAN, for the daemon's hostile-LAN run (run inside the guest's own
network namespace; every loop is bounded by SECONDS and stops by itself).

Usage: hostile_lan.py SECONDS TARGET_IP TARGET_PORT MY_IP FAKES PING_CONNS HALF_RATE

- replays the tag of every real `_hearth._tcp` advertisement it sees on FAKES fake services
  (other names, its own address, the port of a WebSocket endpoint that upgrades and then
  says nothing), and counts the connections those fakes receive;
- keeps PING_CONNS WebSocket connections to the target that send pings and never read;
- opens HALF_RATE idle half-requests a second to the target (each kept until closed).
Prints one JSON line of counters at the end.
"""
import base64
import hashlib
import json
import os
import socket
import sys
import threading
import time

from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

SERVICE = "_hearth._tcp.local."
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

seconds, target_ip, target_port, my_ip = float(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
fakes, ping_conns, half_rate = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
end = time.monotonic() + seconds
stats = {"fake_dials": 0, "tags_replayed": 0, "ping_mib": 0.0, "ping_reconnects": 0, "halfs": 0, "halfs_refused": 0}
lock = threading.Lock()


def bump(k, n=1):
    with lock:
        stats[k] += n


def silent_upgrader(sock):
    """Answers WebSocket upgrades on the fakes' port, then stays silent."""
    sock.settimeout(0.5)
    held = []
    while time.monotonic() < end:
        try:
            c, _ = sock.accept()
        except OSError:
            continue
        bump("fake_dials")
        try:
            c.settimeout(2)
            req = c.recv(4096).decode(errors="replace")
            key = next((l.split(":", 1)[1].strip() for l in req.split("\r\n") if l.lower().startswith("sec-websocket-key:")), "")
            acc = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Accept: {acc}\r\n\r\n").encode())
            held.append(c)
        except OSError:
            c.close()
    for c in held:
        c.close()


def replay_tags(zc, port):
    """Registers fakes carrying the tag of each real service seen."""
    seen = {}

    def on_change(zeroconf, service_type, name, state_change):
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated) and not name.startswith("fake"):
            info = zeroconf.get_service_info(service_type, name, timeout=3000)
            if info is not None and b"t" in info.properties:
                seen[name] = dict(info.properties)

    ServiceBrowser(zc, SERVICE, handlers=[on_change])
    registered = 0
    while time.monotonic() < end and registered < fakes:
        for props in list(seen.values()):
            if registered >= fakes:
                break
            info = ServiceInfo(SERVICE, f"fake{registered:03d}-{os.getpid()}.{SERVICE}", addresses=[socket.inet_aton(my_ip)],
                               port=port, properties=props, server=f"fake{registered:03d}.local.")
            try:
                zc.register_service(info, allow_name_change=True)
                registered += 1
                bump("tags_replayed")
            except Exception:
                pass
        time.sleep(0.5)


def upgrade(c):
    c.sendall((f"GET /v1/sync HTTP/1.1\r\nHost: {target_ip}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        b = c.recv(1)
        if not b:
            raise OSError("closed")
        head += b


def ping_flood():
    frame = bytes([0x89, 0x80 | 125, 1, 2, 3, 4]) + bytes(i ^ (1, 2, 3, 4)[i % 4] for i in range(125))
    burst = frame * 512
    while time.monotonic() < end:
        try:
            c = socket.create_connection((target_ip, target_port), timeout=2)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            upgrade(c)
            c.settimeout(2)
            while time.monotonic() < end:
                c.sendall(burst)
                bump("ping_mib", len(burst) / 1048576)
        except OSError:
            bump("ping_reconnects")
            time.sleep(0.2)


def half_requests():
    held = []
    while time.monotonic() < end:
        try:
            c = socket.create_connection((target_ip, target_port), timeout=1)
            c.sendall(b"GET /v1/sync HTTP/1.1\r\nHost: x\r\n")
            held.append(c)
            bump("halfs")
        except OSError:
            bump("halfs_refused")
        if len(held) > 500:
            held.pop(0).close()
        time.sleep(1 / half_rate)
    for c in held:
        c.close()


def main():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((my_ip, 0))
    srv.listen(256)
    port = srv.getsockname()[1]
    zc = Zeroconf(interfaces=[my_ip])
    threads = [threading.Thread(target=silent_upgrader, args=(srv,)), threading.Thread(target=replay_tags, args=(zc, port)),
               threading.Thread(target=half_requests)]
    threads += [threading.Thread(target=ping_flood) for _ in range(ping_conns)]
    for t in threads:
        t.daemon = True
        t.start()
    while time.monotonic() < end:
        time.sleep(0.2)
    time.sleep(1)
    try:
        zc.unregister_all_services()
        zc.close()
    except Exception:
        pass
    with lock:
        stats["ping_mib"] = round(stats["ping_mib"], 1)
        print(json.dumps(stats), flush=True)
    os._exit(0)


main()
