// `spoke controller --recorder-service-account NAMESPACE:NAME`: the one ServiceAccount whose
// ProfileRecordingResults the /validate-results webhook admits. A value that names no
// ServiceAccount is a usage error at start, never a webhook that refuses every recorder.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseServiceAccount, run } from '../../../src/cli/commands/controller.js';
import { rejectsWith, spokeError } from '../../helpers/assert.js';
import { spoke } from '../../helpers/cli.js';

describe('spoke controller --recorder-service-account', () => {
  it('NAMESPACE:NAME gives that ServiceAccount username', () => {
    assert.equal(parseServiceAccount('spoke-system:spoke-recorder'), 'system:serviceaccount:spoke-system:spoke-recorder');
    assert.equal(parseServiceAccount('rec:node.recorder-1'), 'system:serviceaccount:rec:node.recorder-1');
  });

  it('anything else is a usage error (InvalidArgument, USAGE)', () => {
    const usage = spokeError({ code: 'InvalidArgument', reason: 'USAGE' });
    for (const bad of ['', 'spoke-recorder', ':spoke-recorder', 'spoke-system:', 'a:b:c', 'Spoke:rec', 'ns:Rec', 'ns:-rec', `${'a'.repeat(64)}:rec`, `ns:${'a'.repeat(254)}`, `ns:${'a-'.repeat(50_000)}`]) {
      assert.throws(() => parseServiceAccount(bad), usage, JSON.stringify(bad.slice(0, 40)));
    }
  });

  it('is checked before the controller starts anything', async () => {
    await rejectsWith(run(['--tls-cert', '/nonexistent/tls.crt', '--tls-key', '/nonexistent/tls.key', '--recorder-service-account', 'spoke-recorder']), { code: 'InvalidArgument', reason: 'USAGE' });
  });

  it('--help names the flag', async () => {
    const r = await spoke(['controller', '--help']);
    assert.equal(r.code, 0);
    assert.ok(r.stdout.includes('--recorder-service-account NAMESPACE:NAME'));
  });
});
