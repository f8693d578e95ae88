"""Serves the page headless Chromium opens for tests/tests/webrtc_interop.rs, and carries
its SDP: the page's offer is printed as a JSON line, the answer read from stdin is handed
back to the page, and the page's report ({"got": [...]}) is printed. Runs in the test's
network namespace, beside Chromium; stops after the report or its timeout.
"""
import http.server
import json
import sys
import threading

PAGE = """<!doctype html><html><body><pre id="log">starting</pre><script>
const log = (m) => fetch('/log', {method: 'POST', body: JSON.stringify({log: m})});
window.onerror = (m) => log('error: ' + m);
(async () => {
  const got = [];
  const pc = new RTCPeerConnection();
  const ch = pc.createDataChannel('interop');
  ch.binaryType = 'arraybuffer';
  ch.onopen = () => { log('open'); ch.send(new TextEncoder().encode('ping from chromium')); };
  pc.oniceconnectionstatechange = () => log('ice ' + pc.iceConnectionState);
  pc.onconnectionstatechange = () => log('connection ' + pc.connectionState);
  ch.onmessage = async (e) => {
    got.push(typeof e.data === 'string' ? e.data : new TextDecoder().decode(e.data));
    if (got.includes('hello from hearth') && got.includes('echo:ping from chromium')) {
      await fetch('/result', {method: 'POST', body: JSON.stringify({got})});
    }
  };
  await pc.setLocalDescription(await pc.createOffer());
  await log('gathering');
  // Every candidate in the offer (no trickle): wait for gathering to end, or for the first
  // host candidate and a moment more (headless Chromium may not report the end).
  await new Promise((done) => {
    if (pc.iceGatheringState === 'complete') done();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') done(); };
    pc.onicecandidate = (e) => { if (e.candidate) setTimeout(done, 500); };
  });
  await log('offer: ' + pc.localDescription.sdp.split('\\r\\n').filter((l) => l.startsWith('a=candidate')).join(' | '));
  await fetch('/offer', {method: 'POST', body: JSON.stringify({type: 'offer', sdp: pc.localDescription.sdp})});
  const answer = await (await fetch('/answer')).json();
  await pc.setRemoteDescription(answer);
  await log('answer set');
})().catch((e) => log('failed: ' + e));
</script></body></html>"""

answer = {}
answered = threading.Event()
finished = threading.Event()


def say(obj):
    print(json.dumps(obj), flush=True)


class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        # HTTPServer's own server_bind looks its address up in DNS (socket.getfqdn): in a
        # namespace with no resolver that waits out a timeout, and it must not ask outside.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "hearth-test", self.server_address[1]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, body, kind="application/json"):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/answer":
            answered.wait(30)
            self.reply(json.dumps(answer))
        else:
            self.reply(PAGE, "text/html")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        if self.path == "/offer":
            say(json.loads(body))
        elif self.path == "/log":
            print(json.loads(body)["log"], file=sys.stderr, flush=True)
        elif self.path == "/result":
            say(json.loads(body))
            finished.set()
        self.reply("{}")


def read_answer():
    answer.update(json.loads(sys.stdin.readline()))
    answered.set()


if __name__ == "__main__":
    server = Server((sys.argv[1], int(sys.argv[2])), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=read_answer, daemon=True).start()
    say({"ready": True})
    finished.wait(float(sys.argv[3]) if len(sys.argv) > 3 else 30)
    say({"done": finished.is_set()})
    server.shutdown()
