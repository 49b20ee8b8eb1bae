"""The edge kit both HTTP APIs share: what an error looks like (``problems``), which methods a
path allows (``allow``). Starlette-level pieces only; no process imports run back up from here.
"""
