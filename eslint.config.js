// Lint: typescript-eslint recommended plus the few rules that catch real bugs in async I/O code.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-restricted-imports': ['error', { paths: [{ name: 'child_process', message: 'use node:child_process with argument arrays' }] }],
      eqeqeq: ['error', 'always'],
      'prefer-const': 'error',
    },
  },
);
