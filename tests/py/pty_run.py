"""Runs a command on a pseudo-terminal, as a person at a keyboard would, answering prompts.

Usage: pty_run.py TIMEOUT_S ANSWER... -- COMMAND ARGS...
Each time the program's output ends with ": " (a prompt), the next ANSWER is typed followed
by Enter; with no answers left, Ctrl-D (end of input) is sent instead. Prints one JSON line:
{"status": exit status, "prompts": [prompt lines seen], "output": everything printed}.
"""
import json
import os
import pty
import select
import sys
import time

def main():
    args = sys.argv[1:]
    timeout = float(args.pop(0))
    sep = args.index("--")
    answers, cmd = args[:sep], args[sep + 1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    out = b""
    prompts = []
    answered_at = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        tail = out[answered_at:]
        if tail.rstrip(b" ").endswith(b":") and tail.endswith(b": ") and not r:
            prompts.append(tail.decode(errors="replace").strip().splitlines()[-1])
            answered_at = len(out)
            if answers:
                os.write(fd, answers.pop(0).encode() + b"\r")
            else:
                os.write(fd, b"\x04")
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": os.waitstatus_to_exitcode(status), "prompts": prompts,
                      "output": out.decode(errors="replace")}))

main()
