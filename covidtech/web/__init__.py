"""The edge kit both HTTP APIs share: what an error looks like (``problems``), which methods a path
allows (``allow``), how an operation is declared (``operations``), how a request body is
declared and read (``models``). Starlette-level pieces only; no process imports run back up from
here.
"""

#: How long both APIs keep an idle HTTP connection open (uvicorn's ``timeout_keep_alive``;
#: its default is 5 s). Longer than the idle timeout of usual clients and load balancers
#: (httpx 5 s, nginx 60 s upstream, cloud load balancers 60 s), so the server is never the side
#: that closes an idle connection just as a client reuses it, which the client sees as a
#: request without an answer.
KEEP_ALIVE_S = 75
