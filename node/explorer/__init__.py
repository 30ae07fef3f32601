"""The explorer: a web UI served by every node on its public API port (docs/explorer.md).

``routes(ctx)`` (node/explorer/routes.py) gives the Starlette routes that keyreg.api.app mounts at
``[explorer] path``; data.py reads what the public API's routes read; timeline.py draws a
subject's key timeline as SVG; templates/ and static/ ship inside the package (no CDN).
"""
