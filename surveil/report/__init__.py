"""Surfaces shared by the replay report and the live console: evidence charts (``charts``) and the HTML
report of a replayed day (``html``)."""
