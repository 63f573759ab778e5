-- Tables the catalogue handlers read and write. Table names are defaults;
-- every handler takes its table name as a param (params.table etc.), so
-- create these under whatever names you configure. Idempotent: safe to rerun.

-- email.process-queue: the outbox. Insert rows with status 'pending'.
CREATE TABLE IF NOT EXISTS email_queue (
  id              bigserial PRIMARY KEY,
  recipient       text        NOT NULL,
  sender          text,                         -- falls back to params.from
  subject         text        NOT NULL,
  body_text       text        NOT NULL,
  body_html       text,
  status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
  attempts        integer     NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  claimed_at      timestamptz,
  last_error      text,
  sent_at         timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS email_queue_due ON email_queue (next_attempt_at, id) WHERE status IN ('pending', 'sending');

-- email.daily-summary: one row per recipient and day, written in the same
-- transaction as the send. The digest itself comes from params.query, which
-- must return columns recipient, title and optionally body, url.
CREATE TABLE IF NOT EXISTS email_digest_log (
  recipient   text        NOT NULL,
  digest_date date        NOT NULL,
  items       integer     NOT NULL,
  sent_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (recipient, digest_date)
);

-- sync.calendar: one row per event occurrence (recurring events expanded).
CREATE TABLE IF NOT EXISTS calendar_events (
  feed             text        NOT NULL,
  uid              text        NOT NULL,
  occurrence_start timestamptz NOT NULL,
  occurrence_end   timestamptz NOT NULL,
  summary          text        NOT NULL,
  description      text,
  location         text,
  synced_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (feed, uid, occurrence_start)
);

-- sync.notion: one row per page of the synced databases.
CREATE TABLE IF NOT EXISTS notion_pages (
  page_id          text PRIMARY KEY,
  database_id      text        NOT NULL,
  title            text        NOT NULL,
  url              text,
  properties       jsonb       NOT NULL,
  last_edited_time timestamptz NOT NULL,
  archived         boolean     NOT NULL DEFAULT false,
  synced_at        timestamptz NOT NULL DEFAULT now()
);

-- maintenance.cleanup-sessions: any table with an expiry column works
-- (params.table, params.expiresColumn); this is the default shape.
CREATE TABLE IF NOT EXISTS sessions (
  id         text PRIMARY KEY,
  data       jsonb,
  expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions (expires_at);

-- reminders.dispatch: channel 'email' (recipient is an address) or
-- 'webhook' (recipient is a URL, receives a JSON POST); rrule (RFC 5545,
-- e.g. FREQ=WEEKLY;BYDAY=MO) makes a reminder recur from due_at.
CREATE TABLE IF NOT EXISTS reminders (
  id              bigserial PRIMARY KEY,
  channel         text        NOT NULL CHECK (channel IN ('email', 'webhook')),
  recipient       text        NOT NULL,
  subject         text        NOT NULL,
  message         text        NOT NULL,
  due_at          timestamptz NOT NULL,
  rrule           text,
  status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivering', 'done', 'failed')),
  delivered_count integer     NOT NULL DEFAULT 0,
  last_error      text,
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS reminders_due ON reminders (due_at, id) WHERE status = 'pending';
