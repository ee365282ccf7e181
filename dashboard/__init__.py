"""The read-only dashboard (`curate dashboard`, or `streamlit run app.py` in a checkout); its
Streamlit scripts are in dashboard/web/ (app.py, overview.py, pages/).

* :mod:`dashboard.source`   which store to show, and a fingerprint of its files for caching;
* :mod:`dashboard.queries`  every store read, schema-defensive, returning plain data;
* :mod:`dashboard.analysis` derived numbers: agreement, annotator stats, learning curves, savings;
* :mod:`dashboard.warmup`   the imports app.py loads while the server starts;
* :mod:`dashboard.ui`       Streamlit glue: page setup, sidebar, cached loads, charts.

Like the CLI, the dashboard is a front room: it may import every step, and it never writes.
"""
