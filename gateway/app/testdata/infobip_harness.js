// Runs an Infobip client against smsgate for gateway/app's tests and prints one JSON line.
//   node infobip_harness.js hook <hookfile> <recipient> <text> <apiKey>
//   node infobip_harness.js sdk-send <baseUrl> <apiKey> <recipient> <text>
//   node infobip_harness.js sdk-reports <baseUrl> <apiKey>   (reads the reports twice)
//   node infobip_harness.js sdk-preview <baseUrl> <apiKey> <text>
// NODE_PATH points at testdata/node/node_modules.
'use strict';
const [, , mode, ...args] = process.argv;
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

async function main() {
  if (mode === 'hook') {
    const [file, recipient, text, apiKey] = args;
    const hook = require(file);
    const context = { webtask: { secrets: { API_KEY: apiKey } }, message_type: 'sms', action: 'second-factor-authentication', code: '123456' };
    await new Promise((resolve) => hook(recipient, text, context, (err, res) => {
      if (err) out({ error: String(err.message || err), status: err.response && err.response.status, body: err.response && err.response.data });
      else out({ ok: res });
      resolve();
    }));
    return;
  }
  if (mode === 'sdk-send' || mode === 'sdk-reports' || mode === 'sdk-preview') {
    const { Infobip, AuthType } = require('@infobip-api/sdk');
    const [baseUrl, apiKey, recipient, text] = args;
    const ib = new Infobip({ baseUrl, apiKey, authType: AuthType.ApiKey });
    if (mode === 'sdk-send') {
      const sent = await ib.channels.sms.send({ messages: [{ destinations: [{ to: recipient }], text }] });
      out({ sent: { status: sent.status, data: sent.data } });
      return;
    }
    if (mode === 'sdk-preview') {
      const p = await ib.channels.sms.preview({ text: args[2], languageCode: 'TR' });
      out({ preview: { status: p.status, data: p.data } });
      return;
    }
    const first = await ib.channels.sms.reports.get({ limit: 10 });
    const second = await ib.channels.sms.reports.get({ limit: 10 });
    out({ reports: first.data, again: second.data });
    return;
  }
  throw new Error('unknown mode ' + mode);
}
main().catch((e) => { out({ error: String(e && e.message || e) }); process.exitCode = 1; });
