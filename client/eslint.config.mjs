// Lints the checked-in schema (../schema.graphql): naming, and a description on every type and
// field, so generated clients and GraphiQL document themselves. Run from the repository root by
// the test command: client/node_modules/.bin/eslint --config client/eslint.config.mjs schema.graphql
import graphqlPlugin from "@graphql-eslint/eslint-plugin";

export default [
  {
    files: ["**/*.graphql"],
    languageOptions: { parser: graphqlPlugin.parser, parserOptions: { graphQLConfig: { schema: "schema.graphql" } } },
    plugins: { "@graphql-eslint": graphqlPlugin },
    rules: {
      "@graphql-eslint/naming-convention": ["error", {
        types: "PascalCase",
        FieldDefinition: "camelCase",
        InputValueDefinition: "camelCase",
        Argument: "camelCase",
        EnumValueDefinition: "UPPER_CASE",
        FragmentDefinition: "PascalCase",
      }],
      "@graphql-eslint/require-description": ["error", { types: true, FieldDefinition: true }],
      "@graphql-eslint/no-hashtag-description": "error",
      // Not enabled: no-unreachable-types (ErrorCode is reached through extensions.code, by design)
      // and no-typename-prefix (User.username is the name everyone expects).
      "@graphql-eslint/unique-enum-value-names": "error",
      "@graphql-eslint/require-deprecation-reason": "error",
    },
  },
];
