"""The SMS channel (Twilio): signed webhooks committed to the spool, texts through the twilio
library, status callbacks onto the forward-only delivery status.

Modules: `inbound` (`SmsAdapter`, the inbound webhook, `SmsSpoolParser`), `normalize` (form
fields -> InboundMessage, carrier keywords), `signature` (X-Twilio-Signature), `media` (MMS
fetches), `status` (status callbacks), `outbound` (sends through the twilio library, errors) and
`text` (flattening, segment counts). Importing the package imports no provider library, so the
hub may use `text` (e.g. to refuse a reply that is too long) on a build without twilio calls.
"""
