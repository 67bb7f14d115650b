// The linter: typescript-eslint's recommended rules, and the type-aware ones that catch what a review
// misses here (a promise nobody awaits, a promise where a callback goes, awaiting what is no promise),
// plus type-only imports written as such (so the layout test and the bundler see them for what they are).
import eslint from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
    { ignores: ["node_modules/", ".local-cluster/", "**/*.js", "**/*.mjs"] },
    eslint.configs.recommended,
    ...tseslint.configs.recommended,
    {
        languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
        rules: {
            "@typescript-eslint/no-floating-promises": "error",
            "@typescript-eslint/no-misused-promises": "error",
            "@typescript-eslint/await-thenable": "error",
            "@typescript-eslint/consistent-type-imports": [
                "error",
                { fixStyle: "inline-type-imports", disallowTypeAnnotations: false },
            ],
            "@typescript-eslint/no-unused-vars": [
                "error",
                { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" },
            ],
            eqeqeq: ["error", "always"],
            // A timer read in a closure before it is set (clients/jobsApi.ts) cannot be a const.
            "prefer-const": ["error", { ignoreReadBeforeAssign: true }],
            // Deliberate: Lambda code loads packages with require() inside the function that needs them,
            // so a cold start loads only what it uses (DEVELOPERS.md, "The Lambda is closure-serialized").
            "@typescript-eslint/no-require-imports": "off",
        },
    },
    {
        // Tests shape Kubernetes objects and events as JSON to break them one field at a time.
        files: ["test/**/*.ts"],
        rules: { "@typescript-eslint/no-explicit-any": "off" },
    },
);
