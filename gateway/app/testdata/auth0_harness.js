// Runs one Auth0 snippet the way Auth0 would, against a real smsgate, and prints what the snippet
// did as JSON: {threw, retry, drop, cb}. Used by auth0_snippets_test.go.
// usage: node auth0_harness.js <action|custom-phone-provider|hook> <snippet.js> <url> <key> <scenario-json>
'use strict';
const path = require('path');

async function main() {
  const [kind, file, url, key, scenarioJSON] = process.argv.slice(2);
  const sc = JSON.parse(scenarioJSON);
  const mod = require(path.resolve(file));
  const secrets = { SMSGATE_URL: url, SMSGATE_API_KEY: key };
  const out = { threw: null, retry: null, drop: null, cb: null };
  const cache = { get: () => undefined, set: () => ({ type: 'success' }), delete: () => ({ type: 'success' }) };
  const client = { client_id: 'abc123', name: 'Test App', metadata: {} };
  const request = { ip: '203.0.113.9', method: 'POST', language: 'en', hostname: 'tenant.auth0.com', user_agent: 'Mozilla/5.0' };
  const user = { user_id: 'auth0|1', email: 'user@example.com', app_metadata: {}, user_metadata: {} };
  switch (kind) {
    case 'action': {
      const event = {
        message_options: { recipient: sc.recipient, text: sc.text, code: sc.code, action: 'enrollment', message_type: 'sms' },
        client, request, user, tenant: { id: 'tenant-1' }, secrets,
      };
      try {
        await mod.onExecuteSendPhoneMessage(event, { cache });
      } catch (e) {
        out.threw = e.message;
      }
      break;
    }
    case 'custom-phone-provider': {
      const event = {
        notification: { recipient: sc.recipient, as_text: sc.text, as_voice: sc.text, code: sc.code, delivery_method: 'text', locale: 'en_US', message_type: 'otp_verify' },
        client, request, user, tenant: { id: 'tenant-1', friendly_name: 'Tenant' }, secrets,
      };
      const api = { cache, notification: { retry: (r) => { out.retry = r; }, drop: (r) => { out.drop = r; } } };
      try {
        await mod.onExecuteCustomPhoneProvider(event, api);
      } catch (e) {
        out.threw = e.message;
      }
      break;
    }
    case 'hook': {
      const context = {
        message_type: 'sms', action: 'enrollment', language: 'en', code: sc.code, ip: '203.0.113.9', user_agent: 'Mozilla/5.0',
        client_id: 'abc123', name: 'Test App', client_metadata: {}, user, webtask: { secrets },
      };
      await new Promise((resolve) => {
        mod(sc.recipient, sc.text, context, (err, res) => {
          out.cb = err ? { error: err.message } : { ok: res };
          resolve();
        });
      });
      break;
    }
    default:
      throw new Error('unknown kind ' + kind);
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e));
  process.exit(2);
});
