/**
 * smsgate for Auth0: legacy Send Phone Message Hook (Hooks reached end of life in November 2026;
 * use send-phone-message-action.js where you can). For tenants that still run Hooks.
 *
 * Create the Hook under Auth0 Dashboard > Hooks > Send Phone Message, paste this, and add the hook
 * secrets SMSGATE_URL and SMSGATE_API_KEY. cb(null, {}) reports success, cb(err) a failed send.
 * Node 18+ (global fetch), no npm dependencies.
 */
// Longer than smsgate's default request budget (server.request_timeout, 8 s): the gateway answers
// within its budget, failover included, and this clock starts first, so a shorter or equal timeout
// would give up on sends the gateway is about to confirm. Still under Auth0's 20 s limit for one
// execution. If you raise request_timeout, keep this at least 2 s longer.
// (A test in the repository reads both values and fails if that order is ever reversed.)
const SMSGATE_TIMEOUT_MS = 12000;

module.exports = function (recipient, text, context, cb) {
  const secrets = (context.webtask && context.webtask.secrets) || {};
  const base = String(secrets.SMSGATE_URL || '').replace(/\/+$/, '');
  const key = secrets.SMSGATE_API_KEY;
  if (!base || !key) {
    cb(new Error('smsgate: the hook needs the secrets SMSGATE_URL and SMSGATE_API_KEY'));
    return;
  }
  const { webtask, ...ctx } = context; // never send the hook's secrets on
  fetch(`${base}/v1/send-phone-message`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ recipient, text, context: ctx }),
    signal: AbortSignal.timeout(SMSGATE_TIMEOUT_MS),
  })
    .then(async (res) => {
      if (res.ok) {
        cb(null, {});
        return;
      }
      cb(new Error(`smsgate: the message was not sent: ${await describe(res)}`));
    })
    .catch((err) => {
      const why = err && err.name === 'TimeoutError' ? `no answer within ${SMSGATE_TIMEOUT_MS} ms` : (err && err.message) || String(err);
      cb(new Error(`smsgate: could not reach ${base}: ${why}`));
    });
};

async function describe(res) {
  let text = '';
  try {
    text = await res.text();
    const body = JSON.parse(text);
    if (body && body.error) return `HTTP ${res.status} ${body.error.code}: ${body.error.message}`;
  } catch (_) {
    // not JSON: fall through
  }
  return `HTTP ${res.status} ${text.slice(0, 200)}`;
}
