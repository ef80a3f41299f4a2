/**
 * smsgate for Auth0: Action for the "Send Phone Message" flow (trigger send-phone-message).
 *
 * Paste this into Actions > Library > Build Custom, trigger "Send Phone Message", and add two
 * secrets: SMSGATE_URL (for example https://sms.example.com) and SMSGATE_API_KEY (your tenant's
 * smsgate key). Then drag the Action into the Send Phone Message flow and choose "Custom" as the
 * SMS delivery method in Security > Multi-factor Auth > Phone Message.
 *
 * It posts the event as it is (without event.secrets) to smsgate, which routes it to a provider and
 * fails over when that provider is down. fetch() does not reject on HTTP errors, so every non-2xx
 * answer is turned into a thrown Error: Auth0 then logs a failed send (gd_send_sms_failure) instead
 * of pretending the code went out. Node 18+, no npm dependencies.
 */
// Longer than smsgate's default request budget (server.request_timeout, 8 s): the gateway answers
// within its budget, failover included, and this clock starts first, so a shorter or equal timeout
// would give up on sends the gateway is about to confirm. Still under Auth0's 20 s limit for one
// execution. If you raise request_timeout, keep this at least 2 s longer.
// (A test in the repository reads both values and fails if that order is ever reversed.)
const SMSGATE_TIMEOUT_MS = 12000;

exports.onExecuteSendPhoneMessage = async (event, api) => {
  const base = String(event.secrets.SMSGATE_URL || '').replace(/\/+$/, '');
  const key = event.secrets.SMSGATE_API_KEY;
  if (!base || !key) {
    throw new Error('smsgate: the Action needs the secrets SMSGATE_URL and SMSGATE_API_KEY');
  }
  const { secrets, ...payload } = event; // never send the Action's secrets on
  let res;
  try {
    res = await fetch(`${base}/v1/send-phone-message`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify(payload),
      signal: AbortSignal.timeout(SMSGATE_TIMEOUT_MS),
    });
  } catch (err) {
    const why = err && err.name === 'TimeoutError' ? `no answer within ${SMSGATE_TIMEOUT_MS} ms` : (err && err.message) || String(err);
    throw new Error(`smsgate: could not reach ${base}: ${why}`);
  }
  if (!res.ok) {
    throw new Error(`smsgate: the message was not sent: ${await describe(res)}`);
  }
};

// describe turns smsgate's {"error":{"code","message"}} into one line; other bodies are quoted short.
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
