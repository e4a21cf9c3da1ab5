// What the runtime recorded for a pod sandbox, asked of it once per sandbox (docs/shim.md#runtime-handlers).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SandboxHandlers } from '../../../src/cri/sandbox-handlers.js';
import { encode } from '../../helpers/cri-client.js';
import { spokeError } from '../../helpers/assert.js';

const idOf = (request: Uint8Array) => Buffer.from(request).subarray(2).toString();

describe('SandboxHandlers', () => {
  it('asks PodSandboxStatus once per sandbox, concurrent creates included, and keeps its handler and the annotations the checks read', async () => {
    const asked: string[] = [];
    const handlers = new SandboxHandlers({
      unary: async (path, request) => {
        asked.push(`${path} ${idOf(request)}`);
        const id = idOf(request);
        return encode('PodSandboxStatusResponse', { status: { id, runtime_handler: id === 'sb-g' ? 'runsc' : '', annotations: { 'io.kubernetes.cri.untrusted-workload': 'true', other: 'x' } } });
      },
    });
    const [a, b] = await Promise.all([handlers.ofSandbox('sb-g'), handlers.ofSandbox('sb-g')]);
    assert.equal(a, b);
    assert.equal(a.handler, 'runsc');
    assert.deepEqual([...a.annotations], [['io.kubernetes.cri.untrusted-workload', 'true']], 'only the keys the checks read');
    assert.equal((await handlers.ofSandbox('sb-r')).handler, '');
    assert.equal((await handlers.ofSandbox('sb-g')).handler, 'runsc');
    assert.deepEqual(asked, ['/runtime.v1.RuntimeService/PodSandboxStatus sb-g', '/runtime.v1.RuntimeService/PodSandboxStatus sb-r']);
  });

  it('keeps no answer for a prefix of a sandbox id (containerd resolves one; it may name another sandbox later)', async () => {
    const asked: string[] = [];
    const handlers = new SandboxHandlers({
      unary: async (_path, request) => {
        asked.push(idOf(request));
        return encode('PodSandboxStatusResponse', { status: { id: `${idOf(request)}-full`, runtime_handler: '' } });
      },
    });
    await handlers.ofSandbox('sb');
    await handlers.ofSandbox('sb');
    assert.deepEqual(asked, ['sb', 'sb']);
  });

  it('refuses when the runtime fails (NOT_FOUND kept) or answers without a status, and keeps no failure', async () => {
    let answer: () => Promise<Buffer> = async () => Promise.reject(Object.assign(new Error('upstream unavailable'), { grpcCode: 14 }));
    const handlers = new SandboxHandlers({ unary: () => answer() });
    await assert.rejects(handlers.ofSandbox('sb'), spokeError({ code: 'Unavailable', reason: 'RUNTIME_HANDLER_UNKNOWN' }));
    answer = async () => Promise.reject(Object.assign(new Error('sandbox not found'), { grpcCode: 5 }));
    await assert.rejects(handlers.ofSandbox('sb'), spokeError({ code: 'NotFound', reason: 'RUNTIME_HANDLER_UNKNOWN' }));
    answer = async () => Buffer.alloc(0);
    await assert.rejects(handlers.ofSandbox('sb'), spokeError({ code: 'Unavailable', reason: 'RUNTIME_HANDLER_UNKNOWN' }));
    answer = async () => encode('PodSandboxStatusResponse', { status: { id: 'sb', runtime_handler: 'kata' } });
    assert.equal((await handlers.ofSandbox('sb')).handler, 'kata');
    await assert.rejects(handlers.ofSandbox(''), spokeError({ code: 'InvalidArgument', reason: 'WIRE_INVALID' }));
  });
});
