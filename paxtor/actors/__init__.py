"""An OTP-like runtime on gevent: processes, links, monitors, gen_server, supervisors."""
