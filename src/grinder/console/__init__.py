"""The console: a read-only page of the deployment and its incidents on the metrics port.

``page`` builds the page's model from what the service knows (pure); ``render`` turns it
into HTML with Jinja2 (autoescape on: every value from the exchange or an operator is
untrusted text); ``routes`` serves ``/console`` and ``/console/incidents/{id}``. Every
action stays on ``grinder control`` / ``grinder incidents``: the page shows the command.
"""
