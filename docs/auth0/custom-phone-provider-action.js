/**
 * smsgate for Auth0: Action for the Custom Phone Provider (trigger custom-phone-provider).
 *
 * Configure it under Branding > Phone Provider > Custom (it is not in the Actions editor's flows),
 * with two secrets: SMSGATE_URL (for example https://sms.example.com) and SMSGATE_API_KEY.
 *
 * Auth0 retries a notification up to 5 times when the Action calls api.notification.retry(), and
 * gives up on api.notification.drop(). So: smsgate's 5xx, 429 provider_throttled (every provider
 * is throttling this tenant's sends for a moment) and network failures or timeouts -> retry
 * (another provider, or the same one after it recovers, may send it); other 4xx (bad number,
 * country not allowed, rate limited) -> drop, because sending again would fail the same way.
 * Every call carries an Idempotency-Key derived from the notification, the same on each of Auth0's
 * retries, so a retry after a send that did go through is answered from smsgate's record instead
 * of texting the user twice. Node 18+, no npm dependencies (crypto is built in).
 */
const crypto = require('crypto');

// Longer than smsgate's default request budget (server.request_timeout, 8 s): the gateway answers
// within its budget, failover included, and this clock starts first, so a shorter or equal timeout
// would give up on sends the gateway is about to confirm. Still under Auth0's 20 s limit for one
// execution. If you raise request_timeout, keep this at least 2 s longer.
// (A test in the repository reads both values and fails if that order is ever reversed.)
const SMSGATE_TIMEOUT_MS = 12000;

exports.onExecuteCustomPhoneProvider = async (event, api) => {
  const base = String(event.secrets.SMSGATE_URL || '').replace(/\/+$/, '');
  const key = event.secrets.SMSGATE_API_KEY;
  if (!base || !key) {
    api.notification.drop('smsgate: the Action needs the secrets SMSGATE_URL and SMSGATE_API_KEY');
    return;
  }
  const { secrets, ...payload } = event; // never send the Action's secrets on
  let res;
  try {
    res = await fetch(`${base}/v1/send-phone-message`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${key}`,
        'idempotency-key': idempotencyKey(event, key),
      },
      body: JSON.stringify(payload),
      signal: AbortSignal.timeout(SMSGATE_TIMEOUT_MS),
    });
  } catch (err) {
    const why = err && err.name === 'TimeoutError' ? `no answer within ${SMSGATE_TIMEOUT_MS} ms` : (err && err.message) || String(err);
    api.notification.retry(`smsgate unreachable: ${why}`.slice(0, 1024));
    return;
  }
  if (res.ok) return;
  const { text, code } = await describe(res);
  const reason = `smsgate: ${text}`.slice(0, 1024);
  if (res.status >= 500 || code === 'provider_throttled') {
    api.notification.retry(reason);
  } else {
    api.notification.drop(reason);
  }
};

// idempotencyKey is stable across Auth0's retries of one notification: an HMAC, keyed by the
// Action's own SMSGATE_API_KEY secret, of what identifies the notification (tenant, recipient,
// channel, type, code and text), never a timestamp. Keyed, because the key travels and is stored:
// a plain hash of a six-digit code is searched in microseconds.
function idempotencyKey(event, secret) {
  const n = event.notification || {};
  const parts = [
    (event.tenant && event.tenant.id) || '',
    (event.transaction && event.transaction.correlation_id) || '',
    n.recipient, n.delivery_method, n.message_type, n.code, n.as_text, n.as_voice,
  ];
  return 'auth0-cpp-' + crypto.createHmac('sha256', String(secret)).update(parts.map((p) => String(p || '')).join('\u0000')).digest('hex').slice(0, 40);
}

// describe reads smsgate's answer: a line for Auth0's logs, and the error code when there is one.
async function describe(res) {
  let text = '';
  try {
    text = await res.text();
    const body = JSON.parse(text);
    if (body && body.error) return { text: `HTTP ${res.status} ${body.error.code}: ${body.error.message}`, code: body.error.code };
  } catch (_) {
    // not JSON: fall through
  }
  return { text: `HTTP ${res.status} ${text.slice(0, 200)}`, code: '' };
}
