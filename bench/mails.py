"""Deterministic, realistic citizen emails for the benches, as RFC 5322 bytes.

`make_mails(n, seed=1)` gives the same n mails for the same seed: distinct Message-IDs, about
20% replies (In-Reply-To/References to an earlier mail of the same list, "Re:" subject, mostly
from the same sender), senders drawn from 300 distinct addresses, subjects and bodies about city
matters (potholes, streetlights, permits, taxes, noise...), about a quarter multipart/alternative
with an HTML part, and about 3% with a small attachment (a photo or a PDF form). Some senders
have non-ASCII display names and some bodies non-ASCII text, encoded as mail clients do.

`write_maildir(mails, folder)` writes them one file per mail into a flat directory, which is
what django-helpdesk's "local" mailbox type reads (bench/peers.py).

    python bench/mails.py [-n 20] [--seed 1] [--out DIR]   # prints a summary, or writes DIR
"""

from __future__ import annotations

import argparse
import hashlib
import random
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape
from pathlib import Path

HELPDESK_ADDRESS = "help@city.example"
SENDER_COUNT = 300
REPLY_SHARE = 0.20
HTML_SHARE = 0.25
ATTACHMENT_SHARE = 0.03

FIRST_NAMES = [
    "Ana", "Ben", "Chloé", "Dmitri", "Elif", "Farah", "Gustavo", "Hannah", "Ivan", "Jana",
    "Kofi", "Lena", "Miguel", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tomás",
    "Uma", "Viktor", "Wen", "Xavier", "Yusuf", "Zoë", "Agnieszka", "Björn", "Carmen", "Dario",
]
LAST_NAMES = [
    "Alvarez", "Becker", "Chen", "Dubois", "Evans", "Fischer", "García", "Huang", "Ivanova",
    "Jensen", "Kowalski", "López", "Müller", "Nguyen", "O'Brien", "Patel", "Rossi", "Schmidt",
    "Tanaka", "Weber",
]
DOMAINS = ["example.org", "example.net", "example.com", "mail.example", "post.example"]
STREETS = [
    "Elm Street", "Oak Avenue", "Maple Road", "Harbour Lane", "Station Road", "Mill Street",
    "Church Lane", "Park Avenue", "Riverside Drive", "Market Square", "School Road",
    "Victoria Street", "Linden Allee", "Rue des Fleurs", "Cedar Court",
]


@dataclass(frozen=True)
class Topic:
    subjects: tuple[str, ...]
    openings: tuple[str, ...]
    details: tuple[str, ...]
    asks: tuple[str, ...]
    attachment: tuple[str, str, str] | None = None  # (filename, maintype, subtype)


TOPICS = [
    Topic(
        ("Pothole on {street}", "Dangerous pothole near {number} {street}",
         "Road damage {street}"),
        ("There is a large pothole in front of number {number} on {street}.",
         "The road surface on {street} near number {number} has broken up badly."),
        ("It is about {size} cm wide and fills with water when it rains.",
         "Two cyclists nearly fell there this week.",
         "A car lost a hubcap in it yesterday evening."),
        ("Could you send someone to repair it?", "When will this be fixed?"),
        ("pothole.jpg", "image", "jpeg"),
    ),
    Topic(
        ("Streetlight out on {street}", "Street lamp broken at {number} {street}",
         "No lighting on {street}"),
        ("The streetlight outside {number} {street} has been out for {days} days.",
         "Three lamps in a row on {street} are dark at night."),
        ("The pavement is completely dark and people feel unsafe walking home.",
         "It flickers on and off all night.",
         "The pole number is SL-{number}."),
        ("Please have it repaired.", "Can someone check the wiring?"),
    ),
    Topic(
        ("Building permit application {ref}", "Question about my permit {ref}",
         "Status of permit {ref}"),
        ("I applied for a building permit for an extension at {number} {street} "
         "{days} days ago (reference {ref}).",
         "I would like to know which documents I still need for permit {ref}."),
        ("The online portal still shows the status as 'received'.",
         "The architect's drawings were sent by post last week.",
         "Our builder is waiting to start."),
        ("Could you tell me how long the review will take?",
         "Please let me know what is missing."),
        ("permit_form.pdf", "application", "pdf"),
    ),
    Topic(
        ("Property tax bill {ref}", "Question about my tax assessment",
         "Wrong amount on tax notice {ref}"),
        ("I received the property tax bill {ref} for {number} {street}.",
         "My tax assessment for this year seems far too high."),
        ("The amount is {amount} EUR, last year it was much lower.",
         "The floor area on the notice is wrong.",
         "I already paid by bank transfer on the {days}th."),
        ("Can you check this and send a corrected bill?",
         "How do I file an objection?"),
    ),
    Topic(
        ("Noise complaint {street}", "Loud music every night on {street}",
         "Construction noise at {number} {street}"),
        ("There has been loud music from number {number} on {street} every night.",
         "A construction site on {street} starts work at 5 in the morning."),
        ("It goes on until 2 am and our children cannot sleep.",
         "This has been going on for {days} days now.",
         "The neighbours have complained too."),
        ("What can the city do about this?", "Please send someone to check."),
    ),
    Topic(
        ("Missed bin collection on {street}", "Recycling not collected",
         "Overflowing public bin at {street}"),
        ("The bins on {street} were not collected this week.",
         "The public bin at the bus stop on {street} is overflowing."),
        ("Rubbish is now blowing onto the road.",
         "This is the {nth} time this month.",
         "Foxes have torn the bags open."),
        ("When will the collection happen?", "Please empty it soon."),
    ),
    Topic(
        ("Fallen tree on {street}", "Tree branch blocking {street}",
         "Dangerous tree near {number} {street}"),
        ("A large branch fell onto the pavement on {street} during the storm.",
         "The old tree in front of {number} {street} is leaning towards the houses."),
        ("Pedestrians have to walk on the road.", "It looks like it could fall any day."),
        ("Could the parks department remove it?", "Please have it inspected."),
        ("tree.jpg", "image", "jpeg"),
    ),
    Topic(
        ("Water leak on {street}", "Burst pipe near {number} {street}",
         "Flooded underpass {street}"),
        ("Water has been running out of the ground near {number} {street} since this morning.",
         "The underpass on {street} is flooded again."),
        ("The water is clear, so I think it is a drinking water pipe.",
         "The drain seems to be blocked with leaves."),
        ("Please send the water department.", "Can someone clear the drain?"),
    ),
    Topic(
        ("Parking fine {ref}", "Appeal against parking ticket {ref}",
         "Residents' parking permit"),
        ("I received parking fine {ref} on {street}.",
         "I would like to renew my residents' parking permit for {street}."),
        ("The parking sign was covered by a tree at the time.",
         "I had a valid ticket on the dashboard.",
         "My car registration has changed since last year."),
        ("I would like to appeal.", "What do I need to bring?"),
    ),
]

REPLY_LINES = (
    "Thank you for your answer, but the problem is still there.",
    "I am writing again because nothing has happened yet.",
    "Just to add: it got worse after the weekend.",
    "Thanks, that answers my question.",
    "Any news on this? It has been {days} days.",
    "I forgot to mention that my neighbour reported it too.",
)
SIGN_OFFS = ("Kind regards", "Best wishes", "Thanks", "Regards", "Sincerely", "Cheers")
AGENTS = (
    "Mozilla Thunderbird 115.6", "Apple Mail (2.3774)", "Outlook for Android",
    "Roundcube Webmail/1.6.5",
)

# Tiny but valid-looking files: a JPEG header and a one-page PDF.
JPEG_BYTES = (bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + b"\x00" * 600
              + bytes.fromhex("ffd9"))
PDF_BYTES = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
             b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
             b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
             b"trailer<</Root 1 0 R>>\n%%EOF\n")


# P(attachment | new mail on a topic that has one), so that about ATTACHMENT_SHARE of all mails
# carry one.
_ATTACH_GIVEN_TOPIC = ATTACHMENT_SHARE / (
    (1 - REPLY_SHARE) * sum(t.attachment is not None for t in TOPICS) / len(TOPICS))


@dataclass(frozen=True)
class _Sent:
    message_id: str
    references: str
    subject: str
    sender: int


def senders(count: int = SENDER_COUNT) -> list[tuple[str, str]]:
    """(display name, address) for `count` distinct citizens, the same every time."""
    out = []
    for i in range(count):
        first = FIRST_NAMES[i % len(FIRST_NAMES)]
        last = LAST_NAMES[(i // len(FIRST_NAMES) + i) % len(LAST_NAMES)]
        local = f"{_ascii(first)}.{_ascii(last)}{i}".lower().replace("'", "")
        out.append((f"{first} {last}", f"{local}@{DOMAINS[i % len(DOMAINS)]}"))
    return out


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _fill(template: str, rng: random.Random, street: str, number: int, ref: str) -> str:
    return template.format(
        street=street, number=number, ref=ref, size=rng.randint(20, 120),
        days=rng.randint(2, 28), amount=rng.randint(300, 4000),
        nth=rng.choice(["second", "third", "fourth"]),
    )


def make_mails(n: int, seed: int = 1, run: str = "") -> list[bytes]:
    """n RFC 5322 mails (CRLF line ends), the same for the same (n, seed, run).

    `run` only changes the Message-IDs (and so the threading headers), for benches that must
    not see the same ids twice in one database.
    """
    rng = random.Random(seed)
    people = senders()
    tag = hashlib.sha1(f"{seed}:{run}".encode()).hexdigest()[:10]
    start = datetime(2024, 3, 4, 7, 30, tzinfo=UTC)
    sent: list[_Sent] = []
    out: list[bytes] = []
    for i in range(n):
        when = start + timedelta(minutes=7 * i + rng.randint(0, 6), seconds=rng.randint(0, 59))
        is_reply = bool(sent) and rng.random() < REPLY_SHARE
        parent = rng.choice(sent[-200:]) if is_reply else None
        follow_up = parent is not None and rng.random() < 0.85
        who = parent.sender if parent is not None and follow_up else rng.randrange(len(people))
        name, address = people[who]
        local, domain = address.split("@")
        message_id = f"<{tag}.{i}.{rng.getrandbits(40):010x}@{domain}>"
        greeting = rng.choice(["Hello", "Dear Sir or Madam", "Hi", "Good morning"])
        sign_off = f"{rng.choice(SIGN_OFFS)},\n{name}"
        attachment: tuple[str, str, str] | None = None
        if parent is not None:
            subject = parent.subject if parent.subject.startswith("Re: ") else f"Re: {parent.subject}"
            paragraphs = [_fill(rng.choice(REPLY_LINES), rng, "", 0, "")]
            if rng.random() < 0.5:
                paragraphs.append("Could you give me an update?")
            references = f"{parent.references} {parent.message_id}".strip()
        else:
            topic = rng.choice(TOPICS)
            street = rng.choice(STREETS)
            number = rng.randint(1, 240)
            ref = f"{rng.choice(['PT', 'BP', 'PF', 'TX'])}-{2024}-{rng.randint(1000, 99999)}"
            subject = _fill(rng.choice(topic.subjects), rng, street, number, ref)
            paragraphs = [_fill(rng.choice(topic.openings), rng, street, number, ref)]
            paragraphs += [_fill(d, rng, street, number, ref)
                           for d in rng.sample(topic.details, k=rng.randint(1, len(topic.details)))]
            paragraphs.append(_fill(rng.choice(topic.asks), rng, street, number, ref))
            if topic.attachment and rng.random() < _ATTACH_GIVEN_TOPIC:
                attachment = topic.attachment
                paragraphs.append("I have attached a photo." if attachment[1] == "image"
                                  else "I have attached the filled-in form.")
            references = ""
        text = f"{greeting},\n\n" + "\n\n".join(paragraphs) + f"\n\n{sign_off}\n"
        if parent is not None and rng.random() < 0.6:
            text += (f"\nOn {format_datetime(when - timedelta(days=1))}, "
                     f"{HELPDESK_ADDRESS} wrote:\n> We have received your message.\n")

        msg = EmailMessage(policy=policy.SMTP)
        msg["From"] = Address(name, local, domain)
        msg["To"] = HELPDESK_ADDRESS
        msg["Subject"] = subject
        msg["Date"] = format_datetime(when)
        msg["Message-ID"] = message_id
        if parent is not None:
            msg["In-Reply-To"] = parent.message_id
            msg["References"] = references
        msg["User-Agent"] = AGENTS[who % len(AGENTS)]
        msg.set_content(text)
        if rng.random() < HTML_SHARE:
            html = "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>"
                           for p in text.strip().split("\n\n"))
            msg.add_alternative(f"<html><body>{html}</body></html>", subtype="html")
        if attachment is not None:
            filename, maintype, subtype = attachment
            data = JPEG_BYTES if maintype == "image" else PDF_BYTES
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        # The email package draws boundaries from the global random module: fix them here.
        for k, part in enumerate(p for p in msg.walk() if p.is_multipart()):
            part.set_boundary(f"=_{tag}_{i}_{k}")
        out.append(msg.as_bytes())
        sent.append(_Sent(message_id, references, subject, who))
    return out


def write_maildir(mails: list[bytes], folder: Path | str) -> list[Path]:
    """One file per mail (`000001.eml`...) in `folder`, created if missing.

    This is a flat directory, not a Maildir with cur/new/tmp: django-helpdesk's "local" mailbox
    type reads every regular file directly in `email_box_local_dir`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(len(mails))))
    paths = []
    for i, raw in enumerate(mails, 1):
        path = folder / f"{i:0{width}d}.eml"
        path.write_bytes(raw)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", "--count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the mails into this directory")
    args = parser.parse_args()
    mails = make_mails(args.count, args.seed)
    if args.out:
        write_maildir(mails, args.out)
        print(f"wrote {len(mails)} mails to {args.out}")
        return
    replies = sum(b"\r\nIn-Reply-To: " in m for m in mails)
    html = sum(b"text/html" in m for m in mails)
    attached = sum(b"Content-Disposition: attachment" in m for m in mails)
    print(f"{len(mails)} mails: {replies} replies, {html} with HTML, {attached} with attachment, "
          f"{sum(map(len, mails)) // max(1, len(mails))} bytes on average")


if __name__ == "__main__":
    main()
