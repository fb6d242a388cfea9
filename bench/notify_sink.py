"""The notify benchmark's receivers, in a process of their own so they never share a core's GIL
with what they measure: an SMTP sink (aiosmtpd) and a webhook receiver (uvicorn) that only note
when each message id arrived. `GET /stats` returns those arrival times (epoch seconds).

    python -m bench.notify_sink SMTP_PORT HTTP_PORT
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session

MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^>@\s]+)", re.MULTILINE | re.IGNORECASE)
arrivals: dict[str, dict[str, float]] = {"mail": {}, "hooks": {}}


class CountingSmtp:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        match = MESSAGE_ID.search(envelope.original_content or b"")
        arrivals["mail"][match.group(1).decode() if match else f"unnamed-{len(arrivals['mail'])}"] = time.time()
        return "250 OK"


async def webhooks(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/stats":
        body = json.dumps(arrivals).encode()
    else:
        headers = dict(scope["headers"])
        message_id = headers.get(b"webhook-id", b"").decode() or f"unnamed-{len(arrivals['hooks'])}"
        arrivals["hooks"][message_id.removeprefix("msg_")] = time.time()
        body = b"ok"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def main(smtp_port: int, http_port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = CountingSmtp()
    smtp = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", smtp_port)
    config = uvicorn.Config(webhooks, host="127.0.0.1", port=http_port, log_level="warning", lifespan="off",
                            access_log=False, backlog=4096)
    server = uvicorn.Server(config)
    print("ready", flush=True)
    try:
        await server.serve()
    finally:
        smtp.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
