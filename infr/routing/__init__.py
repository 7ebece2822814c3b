"""Routing: HAProxy and its certificates, per host.

Traffic shape (the same as Infr's):
- port 80 (`frontend http`): routed by Host header with any `:port` stripped; REDIRECT-HTTPS
  answers 301; the ACME HTTP-01 path of TERMINATE names goes to certbot; other names get a
  plain 404 "No such site".
- port 443 (`frontend https`, mode tcp): routed by SNI without decrypting (https FORWARD);
  every other name, TERMINATE ones included, loops through a local unix socket to
  `frontend https_terminate`, which ends TLS with the certificates directory and speaks
  HTTP to the LXC's http_port.
- tcp forwards: one `listen` section each, 1 h idle timeouts.
"""
