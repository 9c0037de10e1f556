"""Prints the mails aiosmtpd's Mailbox handler stored in a Maildir as JSON, each part decoded
(quoted-printable and base64 undone), so the Rust tests assert on plain text."""
import email
import json
import mailbox
import sys
from email import policy

out = []
for key, raw in sorted(mailbox.Maildir(sys.argv[1], factory=None, create=False).items(), key=lambda kv: kv[1].get_date()):
    msg = email.message_from_bytes(raw.as_bytes(), policy=policy.default)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    attachments = [
        {"filename": part.get_filename(), "content_type": part.get_content_type(), "content": part.get_content()
         if isinstance(part.get_content(), str) else part.get_content().decode("utf-8")}
        for part in msg.iter_attachments()
    ]
    out.append({
        "from": str(msg["From"]),
        "to": str(msg["To"]),
        "subject": str(msg["Subject"]),
        "text": text.get_content() if text else None,
        "html": html.get_content() if html else None,
        "attachments": attachments,
    })
print(json.dumps(out))
