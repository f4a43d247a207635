"""The app proxy: opens apps inside sessions to browsers and model services to clients.

It has its own listener (the ``wsproxy_addr`` of start-service replies).  Each opened app or
service endpoint is a *circuit* with a port of its own, so apps see plain root paths, the way
Backend.AI's AppProxy serves them in port mode.
"""
