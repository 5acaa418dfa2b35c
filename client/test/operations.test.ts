// The checked-in operations against the checked-in schema: every root field is used, every
// document validates, and a schema change that breaks a document stops codegen.
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { generate } from "@graphql-codegen/cli";
import { buildSchema, parse, validate, visit, type DocumentNode, type GraphQLObjectType } from "graphql";

import { repoRoot } from "./support/server.js";

const schemaSource = readFileSync(join(repoRoot, "schema.graphql"), "utf8");
const operationsDir = join(repoRoot, "operations");
const documents: DocumentNode[] = readdirSync(operationsDir)
  .filter((name) => name.endsWith(".graphql"))
  .map((name) => parse(readFileSync(join(operationsDir, name), "utf8")));
const combined: DocumentNode = { kind: "Document" as never, definitions: documents.flatMap((d) => d.definitions) };

test("every document validates against schema.graphql", () => {
  const errors = validate(buildSchema(schemaSource), combined);
  assert.deepEqual(errors.map((e) => e.message), []);
});

test("every query, mutation and subscription is used by an operation", () => {
  const schema = buildSchema(schemaSource);
  const used = new Set<string>();
  for (const definition of combined.definitions) {
    if (definition.kind !== "OperationDefinition") continue;
    const root = definition.operation;
    for (const selection of definition.selectionSet.selections) {
      if (selection.kind === "Field") used.add(`${root}.${selection.name.value}`);
    }
  }
  const roots: [string, GraphQLObjectType | null | undefined][] = [
    ["query", schema.getQueryType()],
    ["mutation", schema.getMutationType()],
    ["subscription", schema.getSubscriptionType()],
  ];
  const missing = roots.flatMap(([root, type]) =>
    Object.keys(type?.getFields() ?? {}).map((field) => `${root}.${field}`).filter((name) => !used.has(name)),
  );
  assert.deepEqual(missing, []);
  assert.ok(used.size >= 69, `${used.size} root fields used`);
});

test("operation names are unique, as generated types and Apollo's devtools need", () => {
  const names: string[] = [];
  for (const document of documents) {
    visit(document, {
      OperationDefinition(node) {
        names.push(node.name?.value ?? "(anonymous)");
      },
    });
  }
  assert.deepEqual(names.filter((name, i) => names.indexOf(name) !== i), []);
  assert.ok(!names.includes("(anonymous)"));
});

test("a schema change that breaks a document fails codegen", async () => {
  const broken = schemaSource.replace(/(type Chat implements Node \{[^}]*?)\n  pinned: Boolean!/, "$1");
  assert.notEqual(broken, schemaSource, "the field to remove was found");
  await assert.rejects(
    generate(
      {
        schema: broken,
        documents: [join(operationsDir, "*.graphql")],
        generates: { "unused.ts": { plugins: ["typescript-operations"] } },
        silent: true,
      },
      false,
    ),
    (error: Error) => /pinned/.test(`${error.message} ${JSON.stringify(error)}`),
  );
});
