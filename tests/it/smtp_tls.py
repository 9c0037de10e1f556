"""An SMTP server for the email tests (issue 9): aiosmtpd on loopback that insists on STARTTLS with
the given certificate and on a login (only after TLS), stores each mail it accepts in a Maildir and
appends every login attempt to a JSON-lines file, password left out, so a test can count attempts.

usage: smtp_tls.py PORT MAILDIR CERT KEY USER PASSWORD AUTH_LOG
Prints "ready" once it listens; runs until killed.
"""
import json
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

port, maildir, cert, key, user, password, auth_log = sys.argv[1:8]


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    login = auth_data.login.decode(errors="replace") if isinstance(auth_data, LoginPassword) else None
    with open(auth_log, "a") as f:
        f.write(json.dumps({"mechanism": mechanism, "login": login, "ok": ok, "tls": session.ssl is not None}) + "\n")
    # handled=False: aiosmtpd itself answers a refusal with "535 5.7.8 Authentication credentials invalid".
    return AuthResult(success=ok, handled=False)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(
    Mailbox(maildir),
    hostname="127.0.0.1",
    port=int(port),
    tls_context=context,
    require_starttls=True,
    authenticator=authenticator,
    auth_require_tls=True,
)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
