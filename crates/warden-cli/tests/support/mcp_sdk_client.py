"""An agent built on the official Python MCP SDK (PyPI `mcp`), talking to Warden with a
task token: lists the tools, calls one that is granted and one that is not, and prints
what it saw as JSON. Usage: mcp_sdk_client.py URL TOKEN GRANTED_TOOL OTHER_TOOL"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, token: str, granted: str, other: str) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    out = {}
    async with Client(streamable_http_client(url, http_client=http)) as client:
        tools = await client.list_tools()
        out["tools"] = [t.name for t in tools.tools]
        ok = await client.call_tool(granted, {"id": "c-1"})
        out["granted"] = {
            "is_error": bool(ok.is_error),
            "text": " ".join(c.text for c in ok.content if getattr(c, "text", None)),
        }
        try:
            refused = await client.call_tool(other, {"id": "c-1"})
            out["other"] = {"is_error": bool(refused.is_error), "result": str(refused)}
        except Exception as e:  # the SDK raises McpError for JSON-RPC errors
            err = getattr(e, "error", None)
            out["other"] = {
                "code": getattr(err, "code", None),
                "data": getattr(err, "data", None),
                "message": str(e),
            }
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
