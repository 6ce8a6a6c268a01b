"""``parrot report``: the experiment's one report (report.md, a self-contained report.html, report.json)."""
