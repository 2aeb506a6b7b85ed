"""The Telegram channel (Bot API): webhook or polling in, python-telegram-bot out.

Modules: `inbound` (`TelegramAdapter`: the webhook, the getUpdates poller, start-up checks, and
`TelegramSpoolParser`), `normalize` (an update -> InboundMessage with python-telegram-bot's
types: text, locations, edits, /start, the bot blocked, group traffic ignored), `media` (files
fetched with getFile, size-capped), `outbound` (sendMessage/sendPhoto/sendDocument and the
error verdicts) and `bot` (how a Bot is made and closed, pointed at `[telegram] api_base_url`).
"""
