"""curate dashboard from a checkout: `streamlit run app.py` (add `-- --store PATH` to pick a
store); `curate dashboard` does the same from an installed package.

The server, pages and helpers live in the package (dashboard/web/: app.py, overview.py,
pages/). This file is the same st.App, kept so the command every checkout has known keeps
working (with this folder's .streamlit/config.toml); `streamlit run` finds an app by the
`app = st.App(...)` line in the file it is given, so the line is repeated here.
"""

from __future__ import annotations

import streamlit as st

from dashboard.warmup import warm_up_then_serve
from dashboard.web import WEB

app = st.App(str(WEB / "overview.py"), lifespan=warm_up_then_serve)
