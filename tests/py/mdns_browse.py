"""Independent mDNS check: browse for _hearth._tcp.local. with python-zeroconf and print what
was found as JSON lines (name, server, port, addresses, TXT properties). Exits after the
given number of seconds, or as soon as the expected number of services has resolved."""
import json
import sys
import time

from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf

SERVICE = "_hearth._tcp.local."


def main() -> None:
    seconds = float(sys.argv[1])
    want = int(sys.argv[2])
    zc = Zeroconf()
    found = {}

    def on_change(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Added or state_change is ServiceStateChange.Updated:
            info = zeroconf.get_service_info(service_type, name, timeout=3000)
            if info is not None:
                found[name] = {
                    "name": name,
                    "server": info.server,
                    "port": info.port,
                    "addresses": info.parsed_addresses(),
                    "txt": {k.decode(): (v.decode() if v is not None else None) for k, v in info.properties.items()},
                }

    ServiceBrowser(zc, SERVICE, handlers=[on_change])
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(found) < want:
        time.sleep(0.1)
    zc.close()
    for v in found.values():
        print(json.dumps(v))


if __name__ == "__main__":
    main()
