"""The kernel's own user, for the shared-node tests: with the kernel's connection file,
run code that prints ``--marker`` for ``--seconds`` and count the iopub messages that
carry it (the control: a subscriber with access does see the kernel's output)."""

from __future__ import annotations

import argparse
import json

from jupyter_client import BlockingKernelClient


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("connection_file")
    parser.add_argument("--marker", required=True)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    client = BlockingKernelClient(connection_file=args.connection_file)
    client.load_connection_file()
    client.start_channels()
    client.wait_for_ready(timeout=30)
    count = int(args.seconds / 0.1)
    loop = f"for i in range({count}):\n    print({args.marker!r}, flush=True)\n    time.sleep(0.1)\n"
    code = "import time\n" + loop
    seen = 0

    def output(msg: dict[str, object]) -> None:
        nonlocal seen
        content = msg.get("content")
        if isinstance(content, dict) and args.marker in str(content.get("text", "")):
            seen += 1

    client.execute_interactive(code, timeout=args.seconds + 30, output_hook=output)
    client.stop_channels()
    print(json.dumps({"with_marker": seen, "transport": client.transport}), flush=True)


if __name__ == "__main__":
    main()
