"""Echo peer on the official Python SDK, stateless JSON-response Streamable HTTP."""

import os
from typing import Annotated

from pydantic import BaseModel

from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent

# log_level also sets uvicorn's, so request logging stays out of the measurement.
mcp = MCPServer("echo-peer-python", version="1.0.0", log_level="WARNING")


class Echo(BaseModel):
    message: str


# Returning CallToolResult keeps the text block the bare message (as the other
# peers send it) while the annotation still publishes and checks outputSchema.
@mcp.tool()
def echo(message: str) -> Annotated[CallToolResult, Echo]:
    """Echo the message back."""
    return CallToolResult(
        content=[TextContent(type="text", text=message)],
        structured_content={"message": message},
    )


if __name__ == "__main__":
    mcp.run(
        "streamable-http",
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "3000")),
        streamable_http_path="/mcp",
        stateless_http=True,
        json_response=True,
    )
