// Types for every operation in ../operations, generated from the checked-in ../schema.graphql.
// A schema change that breaks a document makes this step fail, and with it the test command.
import { createHash } from "node:crypto";

import type { CodegenConfig } from "@graphql-codegen/cli";
import { addTypenameSelectionDocumentTransform } from "@graphql-codegen/client-preset";

const config: CodegenConfig = {
  schema: "../schema.graphql",
  documents: ["../operations/**/*.graphql"],
  emitLegacyCommonJSImports: false,
  generates: {
    // The client preset: typed documents, and persisted-documents.json (hash -> document) that a
    // deployment loads as the only operations its API accepts (GRAPHQL_TRUSTED_DOCUMENTS). Each
    // document carries its hash (__meta__.hash), which Apollo's PersistedQueryLink sends.
    "src/generated/": {
      preset: "client",
      // Apollo adds __typename to every selection it sends; the persisted texts must be those texts.
      documentTransforms: [addTypenameSelectionDocumentTransform],
      presetConfig: {
        fragmentMasking: false,
        persistedDocuments: {
          hashAlgorithm: (document: string) => createHash("sha256").update(document).digest("hex"),
        },
      },
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
