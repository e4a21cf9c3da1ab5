// The runtime handler of a pod sandbox, asked of the runtime once per sandbox (docs/shim.md#runtime-handlers).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SandboxHandlers } from '../../../src/cri/sandbox-handlers.js';
import { encode } from '../../helpers/cri-client.js';
import { spokeError } from '../../helpers/assert.js';

describe('SandboxHandlers', () => {
  it("asks PodSandboxStatus once per sandbox and keeps its handler", async () => {
    const asked: string[] = [];
    const handlers = new SandboxHandlers({
      unary: async (path, request) => {
        asked.push(`${path} ${Buffer.from(request).toString('hex')}`);
        const id = Buffer.from(request).subarray(2).toString();
        return encode('PodSandboxStatusResponse', { status: { id, runtime_handler: id === 'sb-g' ? 'runsc' : '' } });
      },
    });
    assert.equal(await handlers.ofSandbox('sb-g'), 'runsc');
    assert.equal(await handlers.ofSandbox('sb-r'), '');
    assert.equal(await handlers.ofSandbox('sb-g'), 'runsc');
    assert.deepEqual(asked, [`/runtime.v1.RuntimeService/PodSandboxStatus ${Buffer.from('\n\x04sb-g').toString('hex')}`, `/runtime.v1.RuntimeService/PodSandboxStatus ${Buffer.from('\n\x04sb-r').toString('hex')}`]);
  });

  it('refuses (UNAVAILABLE) when the runtime fails or answers without a status, and keeps nothing', async () => {
    let answer: () => Promise<Buffer> = async () => Promise.reject(Object.assign(new Error('upstream unavailable'), { grpcCode: 14 }));
    const handlers = new SandboxHandlers({ unary: () => answer() });
    const unknown = spokeError({ code: 'Unavailable', reason: 'RUNTIME_HANDLER_UNKNOWN' });
    await assert.rejects(handlers.ofSandbox('sb'), unknown);
    answer = async () => Buffer.alloc(0);
    await assert.rejects(handlers.ofSandbox('sb'), unknown);
    answer = async () => encode('PodSandboxStatusResponse', { status: { id: 'sb', runtime_handler: 'kata' } });
    assert.equal(await handlers.ofSandbox('sb'), 'kata');
    await assert.rejects(handlers.ofSandbox(''), spokeError({ code: 'InvalidArgument', reason: 'WIRE_INVALID' }));
  });
});
