// ESLint's recommended rules and typescript-eslint's recommended, type-checked ones, run by `npm test`
// (npm run lint). Prettier owns layout (.prettierrc.json), so no rule here is about formatting.
import eslint from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'fixtures/**', 'templates/**', 'coverage/**', 'benchmark/results/**'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // An async function that throws before its first await still rejects, which is what every caller of
      // an adapter's or a seam's promise-returning method expects; so `async` without `await` is kept.
      '@typescript-eslint/require-await': 'off',
      // A function past 80 lines (blank lines and comments aside) does more than one thing; a data table
      // says so where it is, with an eslint-disable comment.
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true }],
      // A variable a closure reads, made before its one assignment (a cleanup registered before what it cleans up exists), stays `let`.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // `_name` marks a parameter an interface requires and this implementation does not use.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // A test's describe and it callbacks hold its cases: long by nature, as a table of cases is.
    files: ['test/**', 'benchmark/**', 'scripts/**'],
    rules: { 'max-lines-per-function': 'off' },
  },
  {
    // Tests read servers' JSON answers and parsed files as `any` on purpose: an expect on a wrong
    // shape fails the test anyway, and typing every answer would double each test's length.
    files: ['test/**'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    // Plain JavaScript (bin, scripts, benchmark, test helpers) is not type-checked: tsconfig has checkJs off.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
