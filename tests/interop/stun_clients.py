#!/usr/bin/env python3
"""Independent STUN clients against hearth-stun: aioice (RFC 8489) and pystun3 (RFC 3489).

Usage: stun_clients.py PRIMARY_HOST PRIMARY_PORT ALT_HOST ALT_PORT [V6_PORT]
Talks only to the loopback addresses it is given. Exits non-zero on the first mismatch.
"""
import socket
import sys

import aioice.stun as stun
import stun as pystun  # pystun3


def aioice_binding(host, port, family, change=None):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(2)
    sock.bind((host, 0))
    req = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    if change is not None:
        # CHANGE-REQUEST is not in aioice's table: append it by hand before the fingerprint.
        body = bytes(req) + b"\x00\x03\x00\x04" + change.to_bytes(4, "big")
        data = bytearray(body)
        data[2:4] = (len(data) - 20).to_bytes(2, "big")
        sock.sendto(bytes(data), (host, port))
    else:
        req.add_fingerprint()
        sock.sendto(bytes(req), (host, port))
    data, src = sock.recvfrom(2048)
    resp = stun.parse_message(data)  # verifies FINGERPRINT
    assert resp.transaction_id == req.transaction_id, "transaction id mismatch"
    assert resp.message_class == stun.Class.RESPONSE, resp.message_class
    mapped = resp.attributes["XOR-MAPPED-ADDRESS"]
    mine = sock.getsockname()[:2]
    assert (mapped[0], mapped[1]) == (mine[0], mine[1]), (mapped, mine)
    assert "FINGERPRINT" in resp.attributes
    return resp, src


def main():
    host, port, alt_host, alt_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    resp, _ = aioice_binding(host, port, socket.AF_INET)
    # SOFTWARE is left out when it would take the reply past 3x the request (reflection bound).
    assert resp.attributes.get("SOFTWARE", "hearth-stun").startswith("hearth-stun"), resp.attributes
    assert len(bytes(resp)) < 3 * 28, "a 28-byte request gets a reply under 84 bytes"
    assert resp.attributes["OTHER-ADDRESS"] == (alt_host, alt_port), resp.attributes
    print("ok aioice ipv4 binding, XOR-MAPPED-ADDRESS and FINGERPRINT verified")

    resp, src = aioice_binding(host, port, socket.AF_INET, change=0x6)
    assert src == (alt_host, alt_port), src
    assert resp.attributes["RESPONSE-ORIGIN"] == (alt_host, alt_port), resp.attributes
    print("ok aioice CHANGE-REQUEST answered from the alternate address")

    if len(sys.argv) > 5:
        resp, _ = aioice_binding("::1", int(sys.argv[5]), socket.AF_INET6)
        print("ok aioice ipv6 binding")

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    free_port = probe.getsockname()[1]
    probe.close()
    nat_type, ext_ip, ext_port = pystun.get_ip_info(
        source_ip="127.0.0.1", source_port=free_port, stun_host=host, stun_port=port
    )
    assert nat_type == pystun.OpenInternet, nat_type
    assert (ext_ip, ext_port) == ("127.0.0.1", free_port), (ext_ip, ext_port)
    print("ok pystun3 RFC 3489 NAT test: " + nat_type)


if __name__ == "__main__":
    main()
