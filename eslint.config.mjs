// ESLint for the extension's TypeScript (sources, tests, e2e) and its build scripts.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: ['**/node_modules/**', 'extension/dist/**', 'extension/e2e/artifacts/**', 'extension/e2e/.tmp/**', '.venv/**', 'build/**', '**/*.d.ts'],
  },
  {
    files: ['esbuild.js'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
    extends: [js.configs.recommended],
  },
  {
    files: ['extension/scripts/**/*.mjs', 'eslint.config.mjs'],
    languageOptions: { sourceType: 'module', globals: globals.node },
    extends: [js.configs.recommended],
  },
  {
    files: ['extension/**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
      globals: globals.node,
    },
    rules: {
      'eqeqeq': ['error', 'always', { null: 'ignore' }],
      'curly': ['error', 'multi-line'],
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true, allowNullish: true }],
    },
  },
  {
    // node:test's describe/it return promises that the runner itself awaits.
    files: ['extension/test/**/*.ts', 'extension/e2e/**/*.ts'],
    rules: { '@typescript-eslint/no-floating-promises': 'off' },
  },
  {
    files: ['extension/src/webview/**/*.ts'],
    languageOptions: { globals: globals.browser },
  },
);
