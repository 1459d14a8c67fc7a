// jsforce 3 against the local org: `node jsforce_client.mjs <call>` with a JSON object on stdin;
// prints one JSON line, {"result": ...} or {"error": {name, errorCode, message}}. A rejected call
// is an answer, not a crash: the exit status is non-zero only when the script itself breaks.
// Driven by tests/devorg/test_client_jsforce.py, which plays the browser of the web server flow.
import jsforce from 'jsforce';

const { Connection, OAuth2, VERSION } = jsforce;

function oauth2Of(input) {
  const oauth2 = new OAuth2({
    loginUrl: input.loginUrl,
    clientId: input.clientId,
    clientSecret: input.clientSecret,
    redirectUri: input.redirectUri,
    useVerifier: true,
  });
  // The verifier jsforce made in the first call, carried over to the code exchange.
  if (input.codeVerifier) oauth2.codeVerifier = input.codeVerifier;
  return oauth2;
}

// A connection from a token alone, the way an app rebuilds one from its store.
function tokenConnection(input) {
  return new Connection({
    instanceUrl: input.instanceUrl,
    accessToken: input.accessToken,
    version: input.version,
  });
}

function batchOf(result) {
  return {
    totalSize: result.totalSize,
    done: result.done,
    nextRecordsUrl: result.nextRecordsUrl ?? null,
    ids: result.records.map((record) => record.Id),
  };
}

// A connection holding the client, the tokens and the instance: jsforce can refresh and revoke.
function refreshableConnection(input) {
  return new Connection({
    oauth2: oauth2Of(input),
    instanceUrl: input.instanceUrl,
    accessToken: input.accessToken,
    refreshToken: input.refreshToken,
    version: input.version,
  });
}

const calls = {
  version: async () => VERSION,

  authorizationUrl: async (input) => {
    const oauth2 = oauth2Of(input);
    const url = oauth2.getAuthorizationUrl({ scope: 'api refresh_token', state: input.state });
    return { url, codeVerifier: oauth2.codeVerifier };
  },

  authorize: async (input) => {
    const conn = new Connection({ oauth2: oauth2Of(input), version: input.version });
    const userInfo = await conn.authorize(input.code);
    return {
      userInfo,
      instanceUrl: conn.instanceUrl,
      accessToken: conn.accessToken,
      refreshToken: conn.refreshToken ?? null,
    };
  },

  query: async (input) => {
    const conn = tokenConnection(input);
    return batchOf(await conn.query(input.soql));
  },

  queryMore: async (input) => {
    const conn = tokenConnection(input);
    return batchOf(await conn.queryMore(input.locator));
  },

  // jsforce's own paging: Query#run with autoFetch follows nextRecordsUrl itself.
  queryAutoFetch: async (input) => {
    const conn = tokenConnection(input);
    const result = await conn.query(input.soql).run({ autoFetch: true, maxFetch: input.maxFetch });
    return batchOf(result);
  },

  describe: async (input) => {
    const conn = tokenConnection(input);
    const described = await conn.describe(input.sobject);
    return {
      name: described.name,
      label: described.label,
      queryable: described.queryable,
      keyPrefix: described.keyPrefix,
      fields: described.fields.map((field) => ({ name: field.name, type: field.type })),
      urls: described.urls,
    };
  },

  describeGlobal: async (input) => {
    const conn = tokenConnection(input);
    const described = await conn.describeGlobal();
    return {
      encoding: described.encoding,
      maxBatchSize: described.maxBatchSize,
      sobjects: described.sobjects.map((sobject) => ({
        name: sobject.name, keyPrefix: sobject.keyPrefix, queryable: sobject.queryable,
      })),
    };
  },

  identity: async (input) => {
    const conn = tokenConnection(input);
    const identity = await conn.identity();
    return { identity, userInfo: conn.userInfo };
  },

  refreshToken: async (input) => {
    const answer = await oauth2Of(input).refreshToken(input.refreshToken);
    return { answer, probe: batchOf(await tokenConnection({ ...input, accessToken: answer.access_token })
      .query('SELECT Id FROM User LIMIT 1')) };
  },

  // A connection holding a dead access token and a refresh token: jsforce refreshes on the 401.
  refreshOnDeadToken: async (input) => {
    const conn = refreshableConnection(input);
    const refreshed = [];
    conn.on('refresh', (accessToken) => refreshed.push(accessToken));
    const batch = batchOf(await conn.query(input.soql));
    return { batch, refreshed, accessToken: conn.accessToken };
  },

  logout: async (input) => {
    const conn = refreshableConnection(input);
    await conn.logout(input.revoke);
    return { accessToken: conn.accessToken ?? null, refreshToken: conn.refreshToken ?? null };
  },

  soapLogin: async (input) => {
    const conn = new Connection({ loginUrl: input.loginUrl, version: input.version, logLevel: 'FATAL' });
    const userInfo = await conn.login(input.username, input.password);
    const probe = batchOf(await conn.query(input.soql));
    return { userInfo, instanceUrl: conn.instanceUrl, accessToken: conn.accessToken, probe };
  },

  // SOAP login, then logout() over SOAP (a SOAP session's logout posts to
  // {instanceUrl}/services/Soap/u/{version}, no org id); returns the session that should be dead.
  soapLogout: async (input) => {
    const conn = new Connection({ loginUrl: input.loginUrl, version: input.version, logLevel: 'FATAL' });
    await conn.login(input.username, input.password);
    const { instanceUrl, accessToken } = conn;
    await conn.logout();
    return { instanceUrl, accessToken };
  },

};

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text.trim() ? JSON.parse(text) : {};
}

const name = process.argv[2];
if (!Object.hasOwn(calls, name)) {
  process.stderr.write(`unknown call ${JSON.stringify(name)}; calls: ${Object.keys(calls).join(', ')}\n`);
  process.exit(2);
}
const input = await readStdin();
let answer;
try {
  answer = { result: await calls[name](input) };
} catch (error) {
  answer = { error: { name: error.name, errorCode: error.errorCode ?? null, message: error.message } };
}
process.stdout.write(`${JSON.stringify(answer)}\n`);
