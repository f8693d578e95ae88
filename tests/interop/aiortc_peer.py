"""An independent WebRTC peer (aiortc) for tests/tests/webrtc_interop.rs.

JSON lines on stdin/stdout, like hearth-webrtc-echo: `offer` prints an offer (with a data
channel) and reads the answer; `answer` reads an offer and prints the answer. Once the
channel is open it sends "ping from aiortc", and prints {"got": [...]} with every message
received when it has the echo of its ping and Hearth's hello (or after the timeout).
"""
import asyncio
import json
import sys

from aiortc import RTCPeerConnection, RTCSessionDescription


async def read_line():
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def say(obj):
    print(json.dumps(obj), flush=True)


async def main(role, timeout):
    pc = RTCPeerConnection()  # no ICE servers: host candidates only
    got = []
    done = asyncio.Event()

    def wire(channel):
        @channel.on("open")
        def on_open():
            channel.send(b"ping from aiortc")

        @channel.on("message")
        def on_message(m):
            got.append(m.decode() if isinstance(m, bytes) else m)
            if "echo:ping from aiortc" in got and "hello from hearth" in got:
                done.set()

        if channel.readyState == "open":
            on_open()

    if role == "offer":
        wire(pc.createDataChannel("interop"))
        await pc.setLocalDescription(await pc.createOffer())
        say({"type": "offer", "sdp": pc.localDescription.sdp})
        answer = json.loads(await read_line())
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    else:
        pc.on("datachannel", wire)
        offer = json.loads(await read_line())
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        say({"type": "answer", "sdp": pc.localDescription.sdp})
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except asyncio.TimeoutError:
        pass
    say({"got": got})
    await pc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 20.0))
