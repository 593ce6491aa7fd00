export * from './tokend-client';
export * from './auth';
export * from './tokend-auth.guard';
export * from './express-middleware';
