// Types for every operation in ../operations, generated from the checked-in ../schema.graphql.
// A schema change that breaks a document makes this step fail, and with it the test command.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../schema.graphql",
  documents: ["../operations/**/*.graphql"],
  emitLegacyCommonJSImports: false,
  generates: {
    "src/generated/graphql.ts": {
      plugins: ["typescript-operations", "typed-document-node"],
      config: {
        enumsAsTypes: true,
        nonOptionalTypename: true,
        useTypeImports: true,
        strictScalars: true,
        scalars: {
          DateTime: "string",
          JSON: "unknown",
          BigInt: "number",
          Upload: "File | Blob",
        },
      },
    },
    // possibleTypes for Apollo's InMemoryCache: unions and interfaces (OperationInfo payloads,
    // ChatStreamEvent, Node) match fragments on their members.
    "src/generated/possible-types.ts": {
      plugins: ["fragment-matcher"],
      config: { apolloClientVersion: 3, useExplicitTyping: true },
    },
  },
};

export default config;
